"""Every collected test that needs the bundled model or PostgreSQL carries the marker that says so."""

from __future__ import annotations

import pytest

from tests.fixtures.markers import NEEDS


def test_fixtures_imply_their_markers(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    assert request.node in items
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in NEEDS.items():
            if used & fixtures:
                assert item.get_closest_marker(marker) is not None, f"{item.nodeid} needs -m {marker}"


def test_a_model_test_is_left_out_by_not_llama(pytestconfig: pytest.Config) -> None:
    from tests.fixtures.markers import pytest_collection_modifyitems

    class Item:
        fixturenames = ("tmp_path", "llama_settings", "bundled_model")

        def __init__(self) -> None:
            self.markers: list[str] = []

        def get_closest_marker(self, name: str) -> object:
            return name if name in self.markers else None

        def add_marker(self, name: str) -> None:
            self.markers.append(name)

    item = Item()
    pytest_collection_modifyitems([item])  # type: ignore[list-item]
    assert item.markers == ["llama"]
