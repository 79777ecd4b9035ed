"""What a failed Slack Web API call says, whatever shape slack_sdk gave its response.

``SlackApiError.response`` is usually a ``SlackResponse`` (Slack's JSON), but when Slack (or a proxy
in front of it) answers with a body that is not JSON, slack_sdk puts the raw aiohttp response there
instead, which has no ``.get``::

    except SlackApiError as exc:
        log.warning("chat.update failed: %s", error_code(exc))
"""

from __future__ import annotations

from collections.abc import Mapping

from slack_sdk.errors import SlackApiError


def error_code(exc: SlackApiError) -> str:
    """Slack's error code ('ratelimited' for a 429 past the retries, 'http_<status>' for a non-JSON body)."""
    response = exc.response
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    if status == 429:
        return "ratelimited"
    data = getattr(response, "data", None)
    if isinstance(data, Mapping) and data.get("error"):
        return str(data["error"])
    return f"http_{status}" if status else "unknown_error"
