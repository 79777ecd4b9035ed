"""The few DingTalk OpenAPI calls the bot makes (access token, robot messages, AI cards), async with timeouts.

The official SDK makes these calls with blocking ``requests`` and no timeouts, against a fixed
host; this client uses the app's aiohttp session and ``dingtalk.api_base_url`` (tests point it at a
loopback fake)::

    api = OpenAPI(session, settings.dingtalk)
    await api.send_markdown(incoming, "Hearth", "**hello**")
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping

import aiohttp

from bot.dingtalk.message import Incoming, Payload
from core.config import DingTalkSettings
from core.errors import ConfigError, HearthError

log = logging.getLogger(__name__)

CARD_CONTENT_KEY = "msgContent"  # the content variable of DingTalk's standard AI markdown card
FLOW_PROCESSING, FLOW_INPUTTING, FLOW_FINISHED, FLOW_FAILED = "1", "2", "3", "5"


class DingTalkAPIError(HearthError):
    """DingTalk refused or failed a call; ``code`` is its errcode / HTTP status when known."""

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


async def send_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Mapping[str, object],
    *,
    client_timeout: aiohttp.ClientTimeout,
    what: str,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, str, Payload]:
    """One JSON call: (HTTP status, raw answer, the answer as an object — {} when it is not one).

    A network failure or timeout becomes DingTalkAPIError saying ``what`` could not be reached.
    """
    try:
        async with session.request(method, url, json=body, headers=headers, timeout=client_timeout) as resp:
            raw = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DingTalkAPIError(f"{what} could not be reached: {exc!r}") from exc
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    return status, raw, data if isinstance(data, dict) else {}


class OpenAPI:
    """An app's OpenAPI client: caches the access token, renews it on 401."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: DingTalkSettings,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not settings.client_id or settings.client_secret is None:
            raise ConfigError("DingTalk OpenAPI calls need dingtalk.client_id and dingtalk.client_secret.")
        self.session = session
        self.base_url = settings.api_base_url.rstrip("/")
        self.client_id = settings.client_id
        self._secret = settings.client_secret
        self.robot_code = settings.robot_code or settings.client_id
        self.timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s)
        self.wall = wall
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def access_token(self) -> str:
        """A valid app access token (fetched at most once per expiry, renewed 5 minutes early)."""
        async with self._lock:
            if self._token is not None and self.wall() < self._token[1]:
                return self._token[0]
            body = {"appKey": self.client_id, "appSecret": self._secret.get_secret_value()}
            data = await self._send("POST", "/v1.0/oauth2/accessToken", body, token=None)
            token = data.get("accessToken")
            if not isinstance(token, str) or not token:
                raise DingTalkAPIError(
                    "DingTalk returned no access token — check dingtalk.client_id/client_secret."
                )
            expires_in = data.get("expireIn", 7200)
            lifetime = float(expires_in) if isinstance(expires_in, (int, float, str)) else 7200.0
            self._token = (token, self.wall() + lifetime - 300)
            return token

    async def call(self, method: str, path: str, body: Mapping[str, object]) -> Payload:
        """Call ``path`` with the access token; renew the token once when DingTalk answers 401."""
        try:
            return await self._send(method, path, body, token=await self.access_token())
        except DingTalkAPIError as exc:
            if exc.code != 401:
                raise
            self._token = None
            return await self._send(method, path, body, token=await self.access_token())

    async def _send(
        self, method: str, path: str, body: Mapping[str, object], *, token: str | None
    ) -> Payload:
        """One HTTP call; non-2xx answers and network failures become DingTalkAPIError."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["x-acs-dingtalk-access-token"] = token
        status, text, data = await send_json(
            self.session,
            method,
            self.base_url + path,
            body,
            client_timeout=self.timeout,
            headers=headers,
            what=f"DingTalk {path}",
        )
        if status >= 300:
            raise DingTalkAPIError(f"DingTalk {path} answered HTTP {status}: {text[:300]}", status)
        return data

    async def send_markdown(self, incoming: Incoming, title: str, text: str) -> None:
        """Post Markdown to the message's conversation as the robot (no sessionWebhook needed)."""
        if not incoming.is_group:
            await self.send_private_markdown(incoming, title, text)
            return
        body = {**self._markdown(incoming, title, text), "openConversationId": incoming.conversation_id}
        await self.call("POST", "/v1.0/robot/groupMessages/send", body)

    async def send_private_markdown(self, incoming: Incoming, title: str, text: str) -> None:
        """Post Markdown to the message's sender alone, in their 1:1 chat with the robot (even from a group)."""
        body = {**self._markdown(incoming, title, text), "userIds": [incoming.staff_id]}
        await self.call("POST", "/v1.0/robot/oToMessages/batchSend", body)

    def _markdown(self, incoming: Incoming, title: str, text: str) -> Payload:
        """The robot message fields of a Markdown message."""
        return {
            "robotCode": incoming.robot_code or self.robot_code,
            "msgKey": "sampleMarkdown",
            "msgParam": json.dumps({"title": title, "text": text}, ensure_ascii=False),
        }

    async def create_card(self, incoming: Incoming, template_id: str, out_track_id: str) -> None:
        """Create an AI card in the message's conversation, in the 'processing' state."""
        robot_code = incoming.robot_code or self.robot_code
        body: Payload = {
            "cardTemplateId": template_id,
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": {CARD_CONTENT_KEY: "", "flowStatus": FLOW_PROCESSING}},
            "callbackType": "STREAM",
            "imGroupOpenSpaceModel": {"supportForward": True},
            "imRobotOpenSpaceModel": {"supportForward": True},
        }
        if incoming.is_group:
            body["openSpaceId"] = f"dtv1.card//IM_GROUP.{incoming.conversation_id}"
            body["imGroupOpenDeliverModel"] = {"robotCode": robot_code}
        else:
            body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{incoming.staff_id}"
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT", "robotCode": robot_code}
        await self.call("POST", "/v1.0/card/instances/createAndDeliver", body)

    async def stream_card(
        self, out_track_id: str, guid: str, content: str, *, final: bool, failed: bool = False
    ) -> None:
        """Replace the card's content (``isFull``); ``final`` ends the stream."""
        body = {
            "outTrackId": out_track_id,
            "guid": guid,
            "key": CARD_CONTENT_KEY,
            "content": content,
            "isFull": True,
            "isFinalize": final,
            "isError": failed,
        }
        await self.call("PUT", "/v1.0/card/streaming", body)

    async def set_card_status(self, out_track_id: str, content: str, status: str) -> None:
        """Set the card's final content and flow status (finished / failed)."""
        body = {
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": {CARD_CONTENT_KEY: content, "flowStatus": status}},
        }
        await self.call("PUT", "/v1.0/card/instances", body)
