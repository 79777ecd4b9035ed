"""The prompt template library.

A template is a Jinja2 file whose first lines are a YAML header inside a Jinja comment::

    {#---
    name: answer
    version: 1
    description: Answer a question from retrieved documents, citing them.
    inputs: [question]                 # required
    optional: [sources, history]       # may be left out (they render as None)
    stop: ["\\n\\nQuestion:"]
    completion_stop: ["\\n\\n"]    # extra stops only when a base model serves (no chat template)
    example: {question: "How do I request leave?"}   # sample inputs: `hearth prompts render NAME` uses them
    ---#}
    {% block system %}You are Hearth…{% endblock %}
    {% block user %}Question: {{ question }}{% endblock %}
    {% block answer_prefix %}Answer:{% endblock %}

Shipped templates live in ``core/prompts/templates``; a team adds or overrides templates by
putting ``NAME.j2`` files in ``prompts.dir``. Rendering runs in Jinja's sandbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from core.errors import PromptError
from core.llm.base import Message, Role

BUILTIN_DIR = Path(__file__).parent / "templates"
_HEADER = re.compile(r"\A\{#---\s*\n(?P<yaml>.*?)\n---#\}\s*\n?", re.S)
FENCE_OPEN = "<<<UNTRUSTED DATA>>>"
FENCE_CLOSE = "<<<END UNTRUSTED DATA>>>"


# Characters that read as one bracket of a fence marker: the ASCII one, the two that NFKC folds into
# it (small and fullwidth forms), and, between brackets, invisible format characters (zero-width
# spaces and joiners, word joiners, soft hyphens, the BOM) that would otherwise hide a run.
_LT, _GT = "<\ufe64\uff1c", ">\ufe65\uff1e"
_INVISIBLE = "\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff"
_FENCE_RUN = re.compile(rf"[{_LT}](?:[{_INVISIBLE}]*[{_LT}]){{2,}}|[{_GT}](?:[{_INVISIBLE}]*[{_GT}]){{2,}}")


def _spread(run: re.Match[str]) -> str:
    return " ".join(c for c in run.group() if c in _LT or c in _GT)


def untrusted(text: object) -> str:
    """Neutralise anything in retrieved text that could close or forge our data fences.

    Every run of three or more angle brackets (the fences are ``<<<…>>>``) becomes brackets
    separated by spaces. Runs are matched whole, so the result never holds a run of three again:
    ``<<<<<END …>>`` becomes ``< < < < <END …>>``, and filtering twice changes nothing.
    """
    return _FENCE_RUN.sub(_spread, str(text))


def turn_text(text: object) -> str:
    """A conversation turn as one fenced line: a message cannot start a line that forges a role."""
    return " ⏎ ".join(line.strip() for line in untrusted(text).splitlines() if line.strip())


@dataclass(frozen=True)
class RenderedPrompt:
    """A template rendered into messages plus generation hints from its header."""

    name: str
    version: int
    messages: list[Message]
    answer_prefix: str = ""
    stop: list[str] = field(default_factory=list)
    completion_stop: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PromptTemplate:
    """One parsed template file."""

    name: str
    version: int
    description: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    stop: tuple[str, ...]
    source: str
    path: Path
    builtin: bool
    example: dict[str, object] = field(default_factory=dict)
    completion_stop: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        """All declared inputs, required first."""
        return self.required + self.optional


def parse_template(path: Path, *, builtin: bool) -> PromptTemplate:
    """Parse a template file's header; raise PromptError naming the file when it is malformed."""
    text = path.read_text(encoding="utf-8")
    match = _HEADER.match(text)
    if not match:
        raise PromptError(
            f"Template {path} has no header — start it with '{{#---' … '---#}}' (see 'hearth prompts show answer')."
        )
    try:
        header = yaml.safe_load(match.group("yaml")) or {}
    except yaml.YAMLError as exc:
        raise PromptError(f"Template {path} has an invalid YAML header: {exc}") from exc
    if not isinstance(header, dict):
        raise PromptError(f"Template {path}: the header must be a mapping.")
    name = str(header.get("name") or path.stem)
    if name != path.stem:
        raise PromptError(f"Template {path}: header name '{name}' must match the file name '{path.stem}'.")
    inputs = header.get("inputs") or []
    optional_inputs = header.get("optional") or []
    if not isinstance(inputs, list) or not isinstance(optional_inputs, list):
        raise PromptError(f"Template {path}: 'inputs' and 'optional' must be lists of names.")
    required = tuple(str(i) for i in inputs)
    optional = tuple(str(i) for i in optional_inputs)
    example = header.get("example") or {}
    if not isinstance(example, dict):
        raise PromptError(f"Template {path}: 'example' must be a mapping of input names to sample values.")
    return PromptTemplate(
        name=name,
        version=int(header.get("version", 1)),
        description=str(header.get("description", "")),
        required=required,
        optional=optional,
        stop=tuple(str(s) for s in header.get("stop") or ()),
        completion_stop=tuple(str(s) for s in header.get("completion_stop") or ()),
        source=text[match.end() :],
        path=path,
        builtin=builtin,
        example=example,
    )


class PromptRegistry:
    """Lists, validates and renders templates; team templates override shipped ones by name."""

    def __init__(self, extra_dir: Path | None = None) -> None:
        self._env = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
        )
        self._env.filters["untrusted"] = untrusted
        self._env.filters["turn"] = turn_text
        self._env.globals.update(FENCE_OPEN=FENCE_OPEN, FENCE_CLOSE=FENCE_CLOSE)
        self._templates: dict[str, PromptTemplate] = {}
        for path in sorted(BUILTIN_DIR.glob("*.j2")):
            tpl = parse_template(path, builtin=True)
            self._templates[tpl.name] = tpl
        if extra_dir is not None:
            if not extra_dir.is_dir():
                raise PromptError(f"prompts.dir {extra_dir} is not a directory.")
            for path in sorted(extra_dir.glob("*.j2")):
                tpl = parse_template(path, builtin=False)
                self._templates[tpl.name] = tpl
        for tpl in self._templates.values():
            self._compile(tpl)

    def names(self) -> list[str]:
        """Template names, sorted."""
        return sorted(self._templates)

    def list(self) -> list[PromptTemplate]:
        """Every template, sorted by name."""
        return [self._templates[n] for n in self.names()]

    def get(self, name: str) -> PromptTemplate:
        """The template called ``name``."""
        try:
            return self._templates[name]
        except KeyError:
            raise PromptError(
                f"Unknown prompt template '{name}'; available: {', '.join(self.names())}"
            ) from None

    def _compile(self, tpl: PromptTemplate) -> Template:
        try:
            return self._env.from_string(tpl.source)
        except TemplateError as exc:
            raise PromptError(f"Template {tpl.path} does not compile: {exc}") from exc

    def render(self, name: str, **variables: object) -> RenderedPrompt:
        """Render ``name`` with ``variables`` into messages."""
        tpl = self.get(name)
        missing = [k for k in tpl.required if k not in variables]
        if missing:
            raise PromptError(f"Template '{name}' needs input(s) {', '.join(missing)}.")
        unknown = [k for k in variables if k not in tpl.inputs]
        if unknown:
            raise PromptError(
                f"Template '{name}' does not take input(s) {', '.join(unknown)}; it takes {', '.join(tpl.inputs)}."
            )
        context = {k: None for k in tpl.optional} | variables
        compiled = self._compile(tpl)
        try:
            ctx = compiled.new_context(context)
            blocks = {b: "".join(fn(ctx)).strip() for b, fn in compiled.blocks.items()}
            if not blocks:
                blocks = {"user": compiled.render(context).strip()}
        except (UndefinedError, TemplateError) as exc:
            raise PromptError(f"Template '{name}' failed to render: {exc}") from exc
        messages = []
        if blocks.get("system"):
            messages.append(Message(Role.SYSTEM, blocks["system"]))
        if blocks.get("user"):
            messages.append(Message(Role.USER, blocks["user"]))
        if not messages:
            raise PromptError(f"Template '{name}' rendered nothing — it needs a 'user' block.")
        return RenderedPrompt(
            name=tpl.name,
            version=tpl.version,
            messages=messages,
            answer_prefix=blocks.get("answer_prefix", ""),
            stop=list(tpl.stop),
            completion_stop=list(tpl.completion_stop),
        )
