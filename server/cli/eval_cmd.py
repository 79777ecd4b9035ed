"""`hearth eval answers FILE`: the verifier's figures over a question file (beside `hearth eval retrieval`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Literal

import click
from rich.console import Console
from rich.table import Table

from core.config import Settings
from server.cli import State, json_option, pass_state
from server.cli.index_cmd import eval_group

__all__ = ["eval_group"]


async def _evaluate_answers(settings: Settings, file: Path) -> dict[str, object]:
    from core.engine import build_assistant
    from core.grounding.evaluation import evaluate, load_cases
    from core.grounding.verify import Verifier

    cases = load_cases(file)
    assistant = build_assistant(settings)
    try:
        report = await evaluate(assistant, cases, Verifier(min_support=settings.retrieval.min_support))
    finally:
        await assistant.aclose()
    return {"figures": report.figures(), "answers": [o.as_dict() for o in report.outcomes]}


@eval_group.command("answers")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--grounding",
    type=click.Choice(["drop", "mark", "off"]),
    default=None,
    help="Override retrieval.grounding for this run ('off': the model's answers unchecked).",
)
@click.option(
    "--quote", type=click.Choice(["auto", "always", "never"]), default=None, help="Override retrieval.quote."
)
@click.option("--verbose", "-v", is_flag=True, help="Also print each question, its answer and the verdict.")
@json_option('Print {"figures": {...}, "answers": [{question, answer, fact_hit, not_found, ...}]}.')
@pass_state
def eval_answers(
    state: State,
    file: Path,
    grounding: Literal["drop", "mark", "off"] | None,
    quote: Literal["auto", "always", "never"] | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Ask every question in FILE (JSON lines: question, fact — null when the docs do not answer it).

    Prints the fact hit rate, how many out-of-scope questions were answered "not found", and the
    share of answers with a sentence the verifier could not support.
    """
    settings = state.settings
    overrides = {k: v for k, v in (("grounding", grounding), ("quote", quote)) if v is not None}
    if overrides:
        settings = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update=overrides)})
    result = asyncio.run(_evaluate_answers(settings, file))
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    console = Console()
    answers = result["answers"]
    assert isinstance(answers, list)
    if verbose:
        for a in answers:
            verdict = (
                "out of scope" if a["fact_hit"] is None else "fact found" if a["fact_hit"] else "fact MISSING"
            )
            found = ", answered not found" if a["not_found"] else ""
            console.print(f"[bold]{a['question']}[/bold]  ({verdict}{found})", highlight=False)
            console.print(a["answer"], markup=False, highlight=False)
            if a["error"]:
                console.print(f"  not answered: {a['error']}", markup=False, highlight=False)
            for s in a["unsupported"]:
                console.print(f"  unsupported: {s}", markup=False, highlight=False)
            console.print()
    figures = result["figures"]
    assert isinstance(figures, dict)
    table = Table("figure", "value")
    table.add_row(
        "questions (answerable / out of scope)",
        f"{figures['questions']} ({figures['answerable']} / {figures['out_of_scope']})",
    )
    table.add_row("fact hit rate", f"{figures['fact_hit_rate']:.3f}")
    table.add_row("out-of-scope answered 'not found'", f"{figures['not_found_correct']:.3f}")
    table.add_row("answerable answered 'not found'", f"{figures['not_found_wrongly']:.3f}")
    table.add_row("answers with an unsupported sentence", f"{figures['unsupported_share']:.3f}")
    table.add_row("answers the verifier corrected", f"{figures['verifier_removed_share']:.3f}")
    if figures["errors"]:
        table.add_row("questions the model failed to answer", str(figures["errors"]))
    console.print(table)
