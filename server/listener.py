"""The listening side of `hearth serve`: deadlines for slow clients and a cap on connections.

aiohttp reads requests without a deadline of its own, so a few hundred clients that send half a
request header each would hold the server's file descriptors for good. Here:

- **headers**: a connection that has not sent a complete request header ``server.header_timeout_s``
  after it opened (or after its last response: idle keep-alive) is closed. This is aiohttp's
  keep-alive timer, which it arms when a connection opens and which closes a connection still
  waiting for its next request;
- **bodies**: a request whose body has not fully arrived ``server.body_timeout_s`` (plus two
  seconds, so the REST body reader's 408 comes first where it applies) after its headers is cut
  off: the handler reading it is cancelled, the connection closed;
- **connections**: at most ``server.max_connections`` are open. A new connection beyond the cap
  closes the oldest one that is not running a request (half-sent headers, idle keep-alive), so
  a flood of slow clients evicts itself while real requests keep being served; when every
  connection is busy with a request, the new one is closed instead.
- **requests that are not HTTP** (a NUL in a header, a bad Content-Length, TLS sent to the plain
  port): aiohttp's parser refuses them with 400 before any Hearth code runs, and logs each at
  ERROR with a traceback. They are the client's error, so here they are one INFO line (DEBUG for
  a first line that is not HTTP at all: scanners) naming the parser's reason, never the bytes
  sent (a header may hold a token), and the 400 carries Hearth's JSON error body. A server error
  (500) is still logged at ERROR with its traceback.

::

    runner, urls = await start_listener(app, settings.server)
    ...
    await runner.cleanup()
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from core import metrics
from core.config import ServerSettings
from server.observability import error_response

log = logging.getLogger(__name__)

# After the app's own drain (server.shutdown_timeout_s), what aiohttp gives lingering connections.
CLOSE_GRACE_S = 2.0
# The REST body reader answers a late body with 408 at server.body_timeout_s; the connection is
# cut this much later, for every route (chat callbacks included) and any handler that never answers.
_BODY_GRACE_S = 2.0
# File descriptors kept out of the connection cap: databases, the engine, log files, clients.
_FD_RESERVE = 128


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to what the process's open-file limit leaves room for."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(8, soft - _FD_RESERVE)
    if room < wanted:
        log.warning(
            "server.max_connections %d lowered to %d: the open-file limit is %d (raise it with ulimit -n)",
            wanted, room, soft,
        )  # fmt: skip
    return min(wanted, room)


class ClientErrorHandler(RequestHandler):
    """aiohttp's connection handler, with a request it cannot parse logged as the client's error."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """400 for a request that is not HTTP, in one log line; anything else as aiohttp does it."""
        if not (isinstance(exc, HttpProcessingError) and 400 <= status < 500):
            return super().handle_error(request, status, exc, message)
        # The parser's reason is its message's first line; the lines after it echo the bytes sent.
        reason = (exc.message.splitlines() or [""])[0].strip().rstrip(":")[:200] or type(exc).__name__
        first = self._request_count == 1 and isinstance(exc, BadHttpMethod)
        log.log(
            logging.DEBUG if first else logging.INFO,
            "refused a request from %s that is not valid HTTP (%s): %s",
            request.remote,
            type(exc).__name__,
            reason,
        )
        metrics.HTTP_REQUESTS.labels("unparsed", "ops", str(status)).inc()
        if request.writer.output_size > 0:  # as aiohttp: a response was already under way
            raise ConnectionError("Response is sent already, cannot send another response")
        response = error_response(status, "bad_request", f"The request is not valid HTTP: {reason}.")
        response.force_close()
        return response


class GuardedServer(web.Server):
    """aiohttp's low-level server with a body deadline per request and a connection cap."""

    def __init__(self, *args: Any, max_connections: int, body_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.body_timeout_s = body_timeout_s
        self.evicted = 0
        self.refused = 0
        make_request = self.request_factory

        def request_factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
            request = make_request(message, payload, protocol, writer, task)
            if not payload.is_eof():
                self._loop.call_later(
                    self.body_timeout_s + _BODY_GRACE_S, self._body_deadline, protocol, payload
                )
            return request

        self.request_factory = request_factory

    def __call__(self) -> RequestHandler:
        """A connection's handler (one per connection): aiohttp's, logging parse errors as the client's."""
        return ClientErrorHandler(self, loop=self._loop, **self._kwargs)

    def _body_deadline(self, protocol: RequestHandler, payload: Any) -> None:
        if payload.is_eof() or protocol.transport is None:
            return
        log.info("closed a connection whose request body was still arriving after %.0fs", self.body_timeout_s)
        metrics.SLOW_CLIENTS.labels("body").inc()
        protocol.force_close()

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        """Admit the connection; past the cap, close the oldest idle one (or this one if none is idle)."""
        super().connection_made(handler, transport)
        if len(self._connections) <= self.max_connections:
            return
        victim = next(
            (
                conn
                for conn in self._connections
                if conn is not handler and not getattr(conn, "_request_in_progress", False)
            ),
            None,
        )
        if victim is not None:
            self.evicted += 1
            metrics.SLOW_CLIENTS.labels("evicted").inc()
            victim.force_close()
            self._connections.pop(victim, None)
        else:
            self.refused += 1
            metrics.SLOW_CLIENTS.labels("refused").inc()
            handler.force_close()
            self._connections.pop(handler, None)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server is a :class:`GuardedServer`."""

    def __init__(self, app: web.Application, limits: ServerSettings, **kwargs: Any) -> None:
        # aiohttp's keep-alive timer closes a connection still waiting for (the rest of) its request.
        super().__init__(app, keepalive_timeout=limits.header_timeout_s, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            max_connections=connection_cap(self.limits.max_connections),
            body_timeout_s=self.limits.body_timeout_s,
            **plain._kwargs,
        )


async def start_listener(app: web.Application, limits: ServerSettings) -> tuple[GuardedRunner, list[str]]:
    """Set ``app`` up and listen on ``limits.host``/``port``; the runner and the URLs it listens on.

    OSError when the address cannot be bound (the runner is cleaned up first).
    """
    runner = GuardedRunner(
        app,
        limits,
        handle_signals=False,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=CLOSE_GRACE_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, limits.host, limits.port, backlog=min(limits.max_connections, 1024))
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    urls = []
    for bound in runner.sites:  # aiohttp exposes a site's bound sockets only on its private server
        for sock in getattr(getattr(bound, "_server", None), "sockets", None) or ():
            host, port = sock.getsockname()[:2]
            urls.append(f"http://{host}:{port}")
    return runner, urls
