"""Slack acknowledgement latency while the local model is busy.

Fires N concurrent signed ``/ask`` requests at the Slack bot's real HTTP route (slack-bolt, real
slack_sdk against the fake Slack Web API on loopback) while the one local model slot is busy, and
reports acknowledgement latency p50/p99 and the Slack API calls per answer. The baseline, measured
in the same run, is a bot that answers before acknowledging (what a handler without bolt's lazy
listeners does): its "ack" waits for the model.

    .venv/bin/python bench/slack_ack.py --requests 20 --model-delay 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import ClientSession, web  # noqa: E402

from bot.slack.app import SlackBot  # noqa: E402
from bot.slack.http import SLACK_BOT, add_routes  # noqa: E402
from core.assistant import Assistant  # noqa: E402
from core.config import Settings  # noqa: E402
from core.contracts import Request  # noqa: E402
from core.db import Database  # noqa: E402
from core.intake import Intake  # noqa: E402
from core.llm.fake import FakeBackend  # noqa: E402
from core.llm.queue import LocalQueue  # noqa: E402
from core.llm.router import Router  # noqa: E402
from tests.fixtures.slack_api import (  # noqa: E402
    SIGNING_SECRET,
    command_body,
    serve_fake_slack_api,
    signed_headers,
    slack_section,
)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(latencies_s: list[float]) -> dict[str, float]:
    """p50/p99/max/mean in milliseconds."""
    ms = [x * 1000 for x in latencies_s]
    return {
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


REAL_MODEL_LLM: dict[str, Any] = {"local": {"n_ctx": 1024, "n_threads": 2}, "max_tokens": 24}


def llm_section(real: bool) -> dict[str, Any]:
    """Settings overrides for the bundled model (small context, short answers), or none."""
    return {"llm": REAL_MODEL_LLM} if real else {}


def make_assistant(settings: Settings, delay_s: float, words: int, real: bool) -> Assistant:
    """The busy local model: the bundled llama.cpp model (``--model real``), or a fake that takes
    ``delay_s`` to its first token; either way one generation at a time."""
    if real:
        return Assistant.from_settings(settings)
    reply = " ".join(f"word{i}" for i in range(words))
    backend = FakeBackend(reply=reply, first_token_delay=delay_s, token_delay=0.002)
    queue = LocalQueue(max_depth=10_000, max_wait_s=3600)
    return Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing, queue=queue))


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Start ``app`` on a free loopback port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def fire(url: str, n: int, response_url: str) -> list[float]:
    """POST ``n`` signed /ask commands at once; return each one's response latency."""

    async def one(session: ClientSession, i: int) -> float:
        body = command_body("/ask", f"question {i}?", user=f"U{i}", response_url=response_url)
        started = time.perf_counter()
        async with session.post(
            url, data=body.encode(), headers=signed_headers(SIGNING_SECRET, body)
        ) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"request {i} got HTTP {resp.status}")
        return time.perf_counter() - started

    async with ClientSession() as session:
        return list(await asyncio.gather(*(one(session, i) for i in range(n))))


async def lazy_bot(home: Path, n: int, delay_s: float, words: int, real: bool) -> dict[str, Any]:
    """Hearth's bot: acknowledge, then answer in the background."""
    async with serve_fake_slack_api() as api:
        settings = Settings(
            home=home / "lazy", slack=slack_section(api, rate_limit_per_minute=1000), **llm_section(real)
        )
        assistant = make_assistant(settings, delay_s, words, real)
        db = Database(settings.database_url)
        bot = SlackBot(settings, Intake(settings, lambda: assistant, db=db), db)
        await bot.start()
        app = web.Application()
        app[SLACK_BOT] = bot
        add_routes(app)
        runner, base = await serve(app)
        # Warm up (auth.test, database tables) so the figures are about steady state.
        await fire(base + "/slack/events", 1, api.response_url())
        await bot.drain()
        api.calls.clear()
        busy = asyncio.create_task(assistant.ask(Request(text="keep the model busy")))
        started = time.perf_counter()
        latencies = await fire(base + "/slack/events", n, api.response_url())
        await bot.drain()
        total_s = time.perf_counter() - started
        await busy
        answers = sum(1 for c in api.calls if c.method == "chat.update" and '"actions"' in json.dumps(c.args))
        web_calls = [c for c in api.calls if c.method not in ("auth.test", "response_url")]
        by_method: dict[str, int] = {}
        for call in web_calls:
            by_method[call.method] = by_method.get(call.method, 0) + 1
        await runner.cleanup()
        await bot.aclose()
        await db.aclose()
        await assistant.aclose()
        return {
            "ack": summary(latencies),
            "answers": answers,
            "all_answered_s": round(total_s, 2),
            "slack_calls_per_answer": round(len(web_calls) / max(1, answers), 2),
            "slack_calls_by_method": by_method,
        }


async def blocking_bot(home: Path, n: int, delay_s: float, words: int, real: bool) -> dict[str, Any]:
    """Baseline: a handler that answers before it acknowledges (no lazy listener)."""
    settings = Settings(home=home / "blocking", **llm_section(real))
    assistant = make_assistant(settings, delay_s, words, real)

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        answer = await assistant.ask(
            Request(text=str(form["text"]), user=str(form["user_id"]), surface="slack")
        )
        return web.json_response({"response_type": "in_channel", "text": answer.text})

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    runner, base = await serve(app)
    latencies = await fire(base + "/slack/events", n, "")
    await runner.cleanup()
    await assistant.aclose()
    return {"ack": summary(latencies)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Run both bots and compare."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        real = getattr(args, "model", "fake") == "real"
        lazy = await lazy_bot(home, args.requests, args.model_delay, args.words, real)
        blocking = await blocking_bot(home, args.requests, args.model_delay, args.words, real)
    return {
        "bench": "slack_ack",
        "requests": args.requests,
        "model": getattr(args, "model", "fake"),
        "model_first_token_s": args.model_delay if getattr(args, "model", "fake") == "fake" else None,
        "hearth_lazy_ack": lazy,
        "baseline_answer_before_ack": blocking,
        "ratio": {
            "baseline_p99_over_hearth_p99": round(
                blocking["ack"]["p99_ms"] / max(0.1, lazy["ack"]["p99_ms"]), 1
            ),
        },
        "target": {"p99_ms_under": 300, "met": lazy["ack"]["p99_ms"] < 300},
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20, help="concurrent /ask requests")
    parser.add_argument("--model-delay", type=float, default=0.2, help="seconds to the model's first token")
    parser.add_argument("--words", type=int, default=60, help="words in each answer")
    parser.add_argument(
        "--model",
        choices=["fake", "real"],
        default="fake",
        help="fake: a slow scripted model; real: the bundled llama.cpp model (n_ctx 1024, 24 tokens)",
    )
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
