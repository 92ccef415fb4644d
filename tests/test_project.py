"""Promises the project makes about itself: ruff clean, every setting documented."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.cluster import ROOT
from voe.settings import SETTINGS


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    command = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    result = subprocess.run([*command, "check", "."], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_in_the_readme_with_its_default(setting):
    readme = (ROOT / "README.md").read_text()
    default = f"`{setting.default}`" if setting.default else "(empty)"
    assert f"| `{setting.name}` | {default} |" in readme


def test_readme_commands_are_the_ones_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "pip install -e '.[test]' && python3 -m pytest"
    assert test_command in readme and test_command in ci


def test_requirements_txt_declares_the_floors_of_pyproject():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert listed == declared
    floors = dict(requirement.split(">=") for requirement in declared)
    fixed = {"requests": "2.32.4", "urllib3": "2.6.0", "cryptography": "44.0.1",
             "paramiko": "3.4", "gevent": "23.9"}  # the fixes pyproject.toml's comment names
    for name, version in fixed.items():
        assert _version(floors[name]) >= _version(version), name


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))
