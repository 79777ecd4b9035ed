"""Stream mode: the official ``dingtalk-stream`` SDK over WebSocket, hardened for a long-running server.

The SDK's own ``start()`` makes its HTTP call with blocking ``requests`` (no timeout) on the event
loop, against a fixed host, and reconnects after fixed sleeps. :class:`StreamClient` keeps the
SDK's frames, routing and ``ChatbotHandler`` but opens the connection in a worker thread with a
timeout, against ``dingtalk.api_base_url``, and reconnects with jittered exponential backoff::

    client = StreamClient(settings.dingtalk, bot.dispatch)
    client.start_background()
    ...
    await client.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import platform
import random
from collections.abc import Awaitable, Callable
from urllib.parse import quote_plus

import requests
import websockets
from dingtalk_stream import (
    AckMessage,
    CallbackMessage,
    ChatbotHandler,
    ChatbotMessage,
    Credential,
    DingTalkStreamClient,
)
from dingtalk_stream.version import VERSION_STRING
from websockets.asyncio.client import ClientConnection

from bot.dingtalk.message import Incoming, Payload
from core.config import DingTalkSettings
from core.errors import ConfigError, InputError

log = logging.getLogger(__name__)
SDK_LOG = logging.getLogger("bot.dingtalk.sdk")


class RobotMessageHandler(ChatbotHandler):  # type: ignore[misc]
    """Acknowledges each robot message at once and hands it to ``on_message`` (which answers later)."""

    def __init__(self, on_message: Callable[[Incoming], object]) -> None:
        super().__init__()
        self.logger = SDK_LOG
        self.on_message = on_message

    async def process(self, message: CallbackMessage) -> tuple[int, str]:
        """Parse the SDK's CallbackMessage into an Incoming; malformed ones are acknowledged with 400."""
        try:
            incoming = Incoming.from_payload(message.data)
        except InputError as exc:
            log.warning("DingTalk Stream message %s rejected: %s", message.headers.message_id, exc)
            return AckMessage.STATUS_BAD_REQUEST, str(exc)
        self.on_message(incoming)
        return AckMessage.STATUS_OK, "OK"


class StreamClient(DingTalkStreamClient):  # type: ignore[misc]
    """The SDK client with a configurable endpoint, timeouts, off-loop HTTP and reconnect backoff."""

    def __init__(
        self,
        settings: DingTalkSettings,
        on_message: Callable[[Incoming], object],
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if not settings.client_id or settings.client_secret is None:
            raise ConfigError("DingTalk Stream mode needs dingtalk.client_id and dingtalk.client_secret.")
        super().__init__(
            Credential(settings.client_id, settings.client_secret.get_secret_value()), logger=SDK_LOG
        )
        self.websocket: ClientConnection | None = None
        self.open_url = settings.api_base_url.rstrip("/") + "/v1.0/gateway/connections/open"
        self.timeout_s = settings.request_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self.register_callback_handler(ChatbotMessage.TOPIC, RobotMessageHandler(on_message))
        self.connections = 0
        self.connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._frames: set[asyncio.Task[None]] = set()

    def open_connection(self) -> Payload | None:
        """Ask the gateway for a WebSocket endpoint and ticket (blocking: call it in a worker thread)."""
        body = {
            "clientId": self.credential.client_id,
            "clientSecret": self.credential.client_secret,
            "subscriptions": [{"type": "CALLBACK", "topic": t} for t in self.callback_handler_map],
            "ua": f"dingtalk-sdk-python/v{VERSION_STRING}-union hearth",
            "localIp": "",
        }
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"DingTalkStream/1.0 SDK/{VERSION_STRING} Python/{platform.python_version()}",
        }
        try:
            response = requests.post(self.open_url, headers=headers, json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            log.warning("DingTalk Stream: could not reach %s: %s", self.open_url, exc)
            return None
        if response.status_code != 200:
            # The body may echo the request; never log the secret with it.
            log.warning(
                "DingTalk Stream: %s answered HTTP %s — check dingtalk.client_id/client_secret",
                self.open_url,
                response.status_code,
            )
            return None
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not data.get("endpoint") or not data.get("ticket"):
            log.warning("DingTalk Stream: %s answered without an endpoint and ticket", self.open_url)
            return None
        return data

    def start_background(self) -> asyncio.Task[None]:
        """Run :meth:`run` in a task the client owns (stopped by :meth:`aclose`)."""
        self._runner = asyncio.create_task(self.run(), name="dingtalk-stream")
        return self._runner

    async def run(self) -> None:
        """Connect, route frames to the SDK handlers, and reconnect with backoff until :meth:`aclose`."""
        self.pre_start()
        failures = 0
        while not self._stopping.is_set():
            try:
                connection = await asyncio.to_thread(self.open_connection)
                if connection is None:
                    raise ConnectionError("the gateway gave no endpoint")
                uri = f"{connection['endpoint']}?ticket={quote_plus(str(connection['ticket']))}"
                async with websockets.connect(uri, open_timeout=self.timeout_s, close_timeout=2) as ws:
                    self.websocket = ws
                    self.connections += 1
                    self.connected.set()
                    failures = 0
                    log.info("DingTalk Stream connected (connection %d)", self.connections)
                    async for raw in ws:
                        self._route(raw)
                log.info("DingTalk Stream connection closed by the gateway")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — any failure means: reconnect later
                failures += 1
                log.warning("DingTalk Stream connection failed: %s", exc)
            finally:
                self.websocket = None
                self.connected.clear()
            if self._stopping.is_set():
                break
            delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, failures - 1))
            delay *= 0.5 + random.random() / 2  # noqa: S311 — jitter, not security
            log.info("DingTalk Stream reconnecting in %.1fs", delay)
            await self._wait(delay)

    def _route(self, raw: str | bytes) -> None:
        """Hand one frame to the SDK's router in a task (the SDK sends the acknowledgement)."""
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("DingTalk Stream: ignoring a frame that is not JSON")
            return
        task = asyncio.create_task(self.background_task(frame))
        self._frames.add(task)
        task.add_done_callback(self._frames.discard)

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less when the client is being stopped."""
        if self._sleep is not None:
            await self._sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def aclose(self) -> None:
        """Stop reconnecting, close the WebSocket and wait for the frame handlers."""
        self._stopping.set()
        if self.websocket is not None:
            with contextlib.suppress(Exception):
                await self.websocket.close()
        if self._runner is not None:
            try:
                await asyncio.wait_for(self._runner, timeout=self.timeout_s)
            except (TimeoutError, asyncio.CancelledError):
                self._runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._runner
        if self._frames:
            await asyncio.gather(*self._frames, return_exceptions=True)
