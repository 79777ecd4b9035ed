"""`hearth ask "question"`."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from core.contracts import Answer, Ask, Delta, Kind, Request
from core.engine import build_assistant
from core.intake import Intake
from core.intake_metrics import METRICS
from core.refusals import Refusal, Refused
from core.render import grouped_sources
from server.cli import State, json_option, pass_state
from server.cli.draft import Draft
from server.cli.spinner import Spinner


def render_answer_footer(answer: Answer) -> str:
    """Sources and the model line printed after a streamed answer."""
    lines: list[str] = []
    for note in answer.notices:
        lines.append(f"Note: {note}")
    if answer.citations:
        lines.append("")
        lines.append("Sources:")
        for group in grouped_sources(answer.citations):
            where = f" ({group.where})" if group.where else ""
            lines.append(f"  {group.label} {group.title} — {group.uri}{where}")
    served = f"{answer.model} ({answer.backend})" if answer.model else "no model (nothing relevant found)"
    lines.append("")
    lines.append(f"— {served}, {answer.timings_ms.get('total', 0) / 1000:.1f}s")
    return "\n".join(lines)


@click.command()
@click.argument("question")
@json_option("Print one JSON object: answer, citations, backend, model, usage, timings_ms.")
@click.option(
    "--acl",
    "acl",
    multiple=True,
    metavar="TOKEN",
    help="Ask as someone holding only these ACL tokens (repeatable). Default: the operator, who sees everything.",
)
@pass_state
def ask(state: State, question: str, as_json: bool, acl: tuple[str, ...]) -> None:
    """Ask a question; the answer streams, then its sources and the model that served it.

    On a terminal the answer streams as a draft and is replaced by the text checked against the
    sources; a pipe gets the checked text only.

    QUESTION may be '-' to read it from standard input.
    """
    if question == "-":
        question = sys.stdin.read()
    request = Request(text=question, acl=frozenset(acl) if acl else None)
    answer = asyncio.run(_run(state, request, stream=not as_json))
    if as_json:
        click.echo(json.dumps(answer.as_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(render_answer_footer(answer))


async def _run(state: State, request: Request, *, stream: bool) -> Answer:
    # A spinner on stderr (on a terminal only) until the first words arrive: loading the models and
    # searching take seconds, and a silent prompt looks hung. The words then stream as a draft
    # (server/cli/draft.py), erased when the checked answer is printed in its place.
    with Spinner("Loading the model…") as spinner, Draft() as draft:
        assistant = build_assistant(state.settings)
        # The same front door as every surface: its refusal is the sentence the command exits with.
        intake = Intake(state.settings, lambda: assistant, observers=[METRICS])
        answer: Answer | None = None
        spinner.update("Searching the docs and thinking…")
        try:
            async for event in intake.run(Ask(Kind.ASK, request)):
                if isinstance(event, Refusal):
                    raise Refused(event)
                if isinstance(event, Delta) and stream:
                    spinner.stop()
                    draft.add(event.text)
                elif isinstance(event, Answer):
                    answer = event
            spinner.stop()
            draft.stop()
            if stream and answer is not None:
                # What the verifier kept (dropped sentences gone, citations its own), not the draft.
                click.echo(answer.text)
        finally:
            await assistant.aclose()
    assert answer is not None
    return answer
