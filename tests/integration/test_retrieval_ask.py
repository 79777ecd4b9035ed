"""`hearth ask` with the real bundled model over real retrieval: it cites the right document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from server.cli import main
from tests.fixtures.core import LLAMA_OVERRIDES
from tests.fixtures.retrieval import corpus_settings


@pytest.mark.llama
def test_ask_cites_the_leave_policy(tmp_path: Path, bundled_model: Path) -> None:
    settings = corpus_settings(tmp_path, **LLAMA_OVERRIDES)
    config = tmp_path / "hearth.yaml"
    config.write_text(
        yaml.safe_dump(settings.model_dump(mode="json", include={"sources", "retrieval", "home", "llm"}))
    )
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(config), "index"]).exit_code == 0
    out = runner.invoke(
        main,
        [
            "--config",
            str(config),
            "ask",
            "--json",
            "--acl",
            "public",
            "How many vacation days do new employees get?",
        ],
    )
    assert out.exit_code == 0, out.output
    answer = json.loads(out.output)
    assert answer["backend"] == "local" and answer["model"]
    cited = [c["doc_id"] for c in answer["citations"]]
    assert "public:leave.md" in cited
    assert all(d.startswith("public:") for d in cited)  # never a source the asker cannot read
    leave = next(c for c in answer["citations"] if c["doc_id"] == "public:leave.md")
    assert leave["location"].startswith("Leave policy › ")
    # Someone who may read nothing relevant gets the not-found answer without the model.
    none = json.loads(
        runner.invoke(
            main,
            [
                "--config",
                str(config),
                "ask",
                "--json",
                "--acl",
                "group:none",
                "How many vacation days do new employees get?",
            ],
        ).output
    )
    assert none["citations"] == [] and none["backend"] == "none" and "could not find" in none["answer"]
