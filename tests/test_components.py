"""Ordering of fetch middlewares and fare pipelines from built-ins, entry points and a setting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from voe.components import ordered

GROUP = "voe.fare_pipelines"
BROKEN = "voe_test_missing_module:Stage"


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution whose fare pipeline entry point cannot be imported."""
    info = tmp_path / "voe_broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: voe-broken-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nbroken = {BROKEN}\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])


def test_a_plugin_that_fails_to_import_is_reported_and_left_out(broken_plugin: None) -> None:
    reported: list[tuple[str, str]] = []
    chosen = ordered({"voe.builtin:Stage": 100}, GROUP, "",
                     lambda path, why: reported.append((path, why)))
    assert [path for path, _ in reported] == [BROKEN]
    assert "ModuleNotFoundError" in reported[0][1]
    assert BROKEN not in [path for _, path, _ in chosen]


def test_a_plugin_turned_off_is_not_even_imported(broken_plugin: None) -> None:
    reported: list[tuple[str, str]] = []
    chosen = ordered({"voe.builtin:Stage": 100}, GROUP, f"{BROKEN}=none",
                     lambda path, why: reported.append((path, why)))
    assert reported == []
    assert (100, "voe.builtin:Stage", None) in chosen
    assert BROKEN not in [path for _, path, _ in chosen]
