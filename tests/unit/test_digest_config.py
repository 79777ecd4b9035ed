"""Digest specs are rejected at config load (or service start) with the bad field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import load_settings
from core.db import Database
from core.digests.service import DigestService
from core.errors import ConfigError, DigestError
from tests.fixtures.core import make_settings


def load(tmp_path: Path, digest: dict[str, Any], **sections: Any) -> Any:
    """Write a hearth.yaml with one digest and load it."""
    spec = {"name": "eng-weekly", "schedule": "0 9 * * MON", "post_to": [{"slack": "#eng"}]} | digest
    path = tmp_path / "hearth.yaml"
    path.write_text(yaml.safe_dump({"digests": [spec], **sections}))
    return load_settings(path)


@pytest.mark.parametrize(
    ("digest", "field", "words"),
    [
        ({"schedule": "0 9 * *"}, "digests.0.schedule", "5 fields"),
        ({"schedule": "0 25 * * MON"}, "digests.0.schedule", "higher than the maximum"),
        ({"schedule": "0 9 * * 1"}, "digests.0.schedule", "weekday with names"),
        ({"timezone": "Mars/Olympus"}, "digests.0.timezone", "unknown time zone"),
        ({"post_to": [{"slack": "#eng", "dingtalk": "x"}]}, "digests.0.post_to", "exactly one"),
        ({"post_to": [{"teams": "x"}]}, "digests.0.post_to", "exactly one"),
        ({"post_to": [{"slack": "eng"}]}, "digests.0.post_to", "post_to[0].slack"),
        ({"post_to": []}, "digests.0.post_to", "at least 1"),
        ({"post_to": [{"dingtalk": "nope"}]}, "digests[0].post_to[0].dingtalk", "unknown webhook 'nope'"),
        (
            {"inputs": {"docs": {"sources": ["wiki"]}}},
            "digests[0].inputs.docs.sources[0]",
            "unknown source 'wiki'",
        ),
        (
            {"inputs": {"tables": [{"source": "sales", "sql": "SELECT 1"}]}},
            "digests[0].inputs.tables[0].source",
            "unknown table source 'sales'",
        ),
        ({"inputs": {"dox": {}}}, "digests.0.inputs.dox", "unknown key"),
        ({"on_no_changes": "maybe"}, "digests.0.on_no_changes", "post"),
        ({"owner": "alice"}, "digests.0.owner", "slack:"),
    ],
)
def test_bad_specs_name_the_field(tmp_path: Path, digest: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, digest)
    assert field in str(err.value) and words in str(err.value)


def test_a_valid_spec_loads_with_its_references(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("team,n\na,1\n")
    settings = load(
        tmp_path,
        {
            "timezone": "Asia/Shanghai",
            "inputs": {
                "docs": {"sources": ["handbook"]},
                "tables": [{"source": "tickets", "sql": "SELECT 1"}],
            },
            "post_to": [{"slack": "#eng"}, {"dingtalk": "eng-robot"}],
            "owner": "dingtalk:eng-robot",
        },
        sources=[{"name": "handbook", "type": "files", "path": str(tmp_path)}],
        tables=[{"name": "tickets", "type": "csv", "path": str(csv)}],
        dingtalk={"webhooks": {"eng-robot": {"url": "https://oapi.dingtalk.com/robot/send?access_token=t"}}},
    )
    [spec] = settings.digests
    assert spec.destinations == [("slack", "#eng"), ("dingtalk", "eng-robot")]
    assert str(spec.trigger().timezone) == "Asia/Shanghai"


async def test_unknown_template_fails_at_service_start(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        digests=[
            {"name": "a", "schedule": "0 9 * * MON", "post_to": [{"slack": "#eng"}]},
            {
                "name": "b",
                "schedule": "0 9 * * MON",
                "post_to": [{"slack": "#eng"}],
                "template": "weekly_typo",
            },
        ],
    )
    db = Database(settings.database_url)
    service = DigestService(settings, None, {}, db)
    with pytest.raises(DigestError) as err:
        await service.open()
    await db.aclose()
    assert "digests[1].template" in str(err.value) and "Unknown prompt template 'weekly_typo'" in str(
        err.value
    )
    assert "digest_weekly" in str(err.value)  # the list of available templates


async def test_template_needing_inputs_a_digest_lacks_is_rejected(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        digests=[
            {"name": "a", "schedule": "0 9 * * MON", "post_to": [{"slack": "#eng"}], "template": "answer"},
        ],
    )
    db = Database(settings.database_url)
    with pytest.raises(
        DigestError, match=r"digests\[0\].template: template 'answer' needs input\(s\) question"
    ):
        await DigestService(settings, None, {}, db).open()
    await db.aclose()
