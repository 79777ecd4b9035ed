"""The `/digest` chat command, shared by every chat surface::

    reply = await handle_command(service, 'create eng-weekly "0 9 * * MON" post_to=slack:#eng', user="U123")

Sub-commands: ``create NAME "CRON" post_to=slack:#chan[,dingtalk:robot] [template=…] [timezone=…]
[docs=src1,src2] [chat=#chan1,#chan2] [on_no_changes=post|skip] [owner=slack:U…]``, ``list``, ``run NAME``, ``delete NAME``.
Invalid input returns a message naming the field; nothing here raises to the surface.
"""

from __future__ import annotations

import logging
import shlex
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from core.digests import messages
from core.digests.config import SpecData
from core.digests.service import DigestService
from core.errors import DigestError, HearthError

log = logging.getLogger(__name__)

_OPTIONS = {"template", "timezone", "post_to", "docs", "chat", "on_no_changes", "owner"}


def parse_create(args: list[str], user: str, surface: str | None) -> SpecData:
    """The spec data of a ``create`` command; DigestError naming the field when malformed."""
    if len(args) < 2 or "=" in args[0] or "=" in args[1]:
        raise DigestError(messages.CMD_USAGE)
    data: SpecData = {"name": args[0], "schedule": args[1]}
    inputs: SpecData = {}
    for arg in args[2:]:
        key, sep, value = arg.partition("=")
        if not sep or key not in _OPTIONS:
            raise DigestError(
                messages.CMD_INVALID.format(
                    field=key, reason=f"unknown option; use {', '.join(sorted(_OPTIONS))}"
                )
            )
        if key == "post_to":
            targets = []
            for item in value.split(","):
                surf, colon, dest = item.partition(":")
                if not colon:
                    raise DigestError(
                        messages.CMD_INVALID.format(
                            field="post_to",
                            reason=f"'{item}' must look like slack:#channel or dingtalk:webhook-name",
                        )
                    )
                targets.append({surf: dest})
            data["post_to"] = targets
        elif key == "docs":
            inputs["docs"] = {"sources": [s for s in value.split(",") if s]}
        elif key == "chat":
            inputs["chat"] = {"channels": [c for c in value.split(",") if c]}
        else:
            data[key] = value
    if inputs:
        data["inputs"] = inputs
    if "post_to" not in data:
        raise DigestError(
            messages.CMD_INVALID.format(field="post_to", reason="say where to post, e.g. post_to=slack:#eng")
        )
    if "owner" not in data and surface is not None:
        data["owner"] = f"{surface}:{user}"
    return data


def describe_error(exc: ValidationError) -> str:
    """The first validation problem as 'field: reason'."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "digest"
    reason = str(err["msg"]).removeprefix("Value error, ")
    return messages.CMD_INVALID.format(field=field, reason=reason)


async def handle_command(service: DigestService, text: str, user: str, *, surface: str | None = None) -> str:
    """Run one `/digest …` command and return the reply text."""
    try:
        args = shlex.split(text)
    except ValueError:
        return messages.CMD_INVALID.format(field="command", reason="unbalanced quotes")
    if not args:
        return messages.CMD_USAGE
    verb, rest = args[0].lower(), args[1:]
    try:
        if verb == "create":
            data = parse_create(rest, user, surface)
            try:
                spec = await service.create(data, user)
            except ValidationError as exc:
                return describe_error(exc)
            except ValueError as exc:  # a reference to an unknown source or webhook
                return messages.CMD_INVALID.format(field="digest", reason=str(exc))
            nxt = service.next_run(spec.name)
            return messages.CMD_CREATED.format(
                name=spec.name,
                schedule=spec.schedule,
                timezone=spec.timezone,
                next_run=_when(nxt, spec.timezone),
            )
        if verb == "list":
            return _list(service)
        if verb in ("run", "delete") and len(rest) == 1:
            name = rest[0]
            if name not in service.specs:
                return messages.CMD_UNKNOWN.format(
                    name=name, available=", ".join(sorted(service.specs)) or "(none)"
                )
            if verb == "delete":
                await service.delete(name, user)
                return messages.CMD_DELETED.format(name=name)
            run = await service.run(name)
            if run is None:
                return messages.CMD_ALREADY.format(name=name)
            detail = "".join(f"; {k}: {d.status}" for k, d in run.deliveries.items())
            return messages.CMD_RAN.format(name=name, status=run.status, detail=detail)
        return messages.CMD_USAGE
    except DigestError as exc:
        return str(exc)
    except HearthError:
        log.exception("/digest %s failed", verb)
        return messages.CMD_FAILED


def _when(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return "never"
    return f"{moment.astimezone(ZoneInfo(timezone)):%a %d %b %Y %H:%M} {timezone}"


def _list(service: DigestService) -> str:
    if not service.specs:
        return messages.CMD_NO_DIGESTS
    lines = []
    for name in sorted(service.specs):
        spec = service.specs[name]
        where = ", ".join(f"{s} {d}" for s, d in spec.destinations)
        origin = f"created by {service.created_by[name]}" if name in service.created_by else "hearth.yaml"
        lines.append(
            f"- *{name}* `{spec.schedule}` → {where}; next {_when(service.next_run(name), spec.timezone)} "
            f"({origin})"
        )
    return "\n".join(lines)
