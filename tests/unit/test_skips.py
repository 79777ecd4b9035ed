"""A part that cannot run here is a counted skip locally and a failure in CI."""

from __future__ import annotations

import pytest

from tests.fixtures.skips import needs_root, unavailable


def test_outside_ci_it_is_a_skip_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Neovim is missing"):
        unavailable("Neovim is missing")


def test_in_ci_it_fails_unless_an_outside_service_is_to_blame(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run this, but: Neovim is missing"):
        unavailable("Neovim is missing")
    with pytest.raises(pytest.skip.Exception):
        unavailable("the npm registry is out of reach", ci_may_skip=True)


def test_needs_root_skips_only_for_other_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    needs_root("a throwaway user")  # root: nothing happens
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="a throwaway user needs root"):
        needs_root("a throwaway user")
