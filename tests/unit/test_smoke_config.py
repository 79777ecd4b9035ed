from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text("llm:\n  local:\n    modle_path: /x.gguf\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "llm.local.modle_path" in str(err.value)
    assert "model_path" in str(err.value)
