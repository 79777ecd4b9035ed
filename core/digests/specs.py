"""Every digest spec a service knows: hearth.yaml's, and those created from chat.

Chat-created specs live in the state database, so every replica picks them up on its next
:meth:`SpecBook.reload`; a spec in hearth.yaml shadows a chat-created one of the same name.
"""

from __future__ import annotations

import logging

from core.digests import messages
from core.digests.access import problems
from core.digests.config import DigestSpec, SpecData, spec_from_data
from core.digests.configured import DigestsConfigured
from core.digests.store import RunStore
from core.errors import DigestError, PromptError
from core.prompts.registry import PromptRegistry

log = logging.getLogger(__name__)

TEMPLATE_INPUTS = {"digest", "period", "docs", "tables", "chat", "notes"}


class SpecBook:
    """Digest specs by name, with who created the chat-made ones."""

    def __init__(
        self,
        settings: DigestsConfigured,
        prompts: PromptRegistry,
        store: RunStore,
        *,
        chat_reader: object = None,
    ) -> None:
        self.settings = settings
        self.prompts = prompts
        self.store = store
        self.chat_reader = chat_reader  # tells who reads a chat channel (inputs.chat), when it can
        self.specs: dict[str, DigestSpec] = {s.name: s for s in settings.digests}
        self.created_by: dict[str, str] = {}
        self._invalid: set[str] = set()

    def get(self, name: str) -> DigestSpec:
        """The spec called ``name``; DigestError naming the known ones."""
        try:
            return self.specs[name]
        except KeyError:
            available = ", ".join(sorted(self.specs)) or "(none)"
            raise DigestError(f"Unknown digest '{name}'; available: {available}") from None

    def check_templates(self) -> None:
        """DigestError naming ``digests[i].template`` for the first configured digest with a bad template."""
        for i, spec in enumerate(self.settings.digests):
            self.check_template(spec, f"digests[{i}].template")

    def check_template(self, spec: DigestSpec, where: str) -> None:
        """DigestError naming ``where`` when the template is unknown or needs inputs a digest lacks."""
        try:
            tpl = self.prompts.get(spec.template)
        except PromptError as exc:
            raise DigestError(f"{where}: {exc}") from None
        missing = [i for i in tpl.required if i not in TEMPLATE_INPUTS]
        if missing:
            raise DigestError(
                f"{where}: template '{spec.template}' needs input(s) {', '.join(missing)}, which a digest "
                f"does not provide; a digest template may use {', '.join(sorted(TEMPLATE_INPUTS))}."
            )

    async def reload(self) -> None:
        """Pick up digests created or deleted from chat (possibly on another replica)."""
        saved = await self.store.saved_specs()
        for name in [n for n in self.created_by if n not in saved]:
            del self.specs[name]
            del self.created_by[name]
        for name, (data, user) in saved.items():
            if name in self.created_by:
                continue
            if name in self.specs:
                log.warning("digest %s from chat is shadowed by hearth.yaml; using the file's", name)
                continue
            try:
                spec = spec_from_data(data, self.settings, f"digest '{name}'")
                self.check_template(spec, f"digest '{name}'.template")
            except (ValueError, DigestError) as exc:
                if name not in self._invalid:
                    self._invalid.add(name)
                    log.error("chat-created digest %s is no longer valid and is not scheduled: %s", name, exc)
                continue
            self.specs[name] = spec
            self.created_by[name] = user

    async def create(self, data: SpecData, user: str) -> DigestSpec:
        """Validate and store a new digest; DigestError (or ValidationError) naming the field when invalid."""
        name = str(data.get("name", ""))
        if name in self.specs:
            raise DigestError(messages.CMD_EXISTS.format(name=name))
        spec = spec_from_data(data, self.settings, f"digest '{name}'")
        self.check_template(spec, "template")
        refused = await problems(spec, self.settings, self.chat_reader, creator=user)
        if refused:
            raise DigestError(messages.CMD_FORBIDDEN.format(reason="; ".join(refused)))
        if not await self.store.save_spec(spec.name, spec.model_dump(mode="json"), user):
            raise DigestError(messages.CMD_EXISTS.format(name=name))
        self.specs[spec.name] = spec
        self.created_by[spec.name] = user
        return spec

    async def delete(self, name: str, user: str | None = None) -> None:
        """Remove a chat-created digest (its run history stays); only its creator or an admin may.

        ``user`` None is the operator (the CLI).
        """
        self.get(name)
        if name not in self.created_by:
            raise DigestError(messages.CMD_IN_CONFIG.format(name=name))
        if user is not None and user != self.created_by[name] and user not in self.settings.digest_admins:
            raise DigestError(messages.CMD_NOT_YOURS.format(name=name, owner=self.created_by[name]))
        await self.store.delete_spec(name)
        del self.specs[name]
        del self.created_by[name]
