"""The package deployed to the machines: a wheel of this checkout, or one the user names.

voe is pure Python, so its wheel is a zip of ``voe/`` plus the metadata that
``pyproject.toml`` already holds; building it here needs no build backend and takes a
blink. Its version carries the checkout's content hash (``0.1.0+g1a2b3c...``), so pip
on a machine upgrades exactly when the code changed.
"""

from __future__ import annotations

import base64
import hashlib
import tomllib
import zipfile
from pathlib import Path

from voe.cloud.cluster import CloudConfigError

# Zip entries get this fixed time, so the same checkout gives the same wheel.
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def source_root() -> Path:
    """The checkout voe runs from (the folder holding ``pyproject.toml`` and ``voe/``)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    try:
        name = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"]
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        name = None
    if name != "voe":
        raise CloudConfigError(
            f"voe is not running from a checkout ({root} has no voe pyproject.toml): set "
            "VOE_DEPLOY_PACKAGE to a voe wheel or sdist to install on the machines")
    return root


def package_files(root: Path) -> list[Path]:
    """Every file of the ``voe`` package, without caches, in a stable order."""
    files = []
    for path in sorted((root / "voe").rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or "__pycache__" in relative.parts:
            continue
        if path.suffix in (".pyc", ".pyo") or any(p.startswith(".") for p in relative.parts):
            continue
        files.append(path)
    return files


def build_wheel(root: Path, out_dir: Path) -> Path:
    """Write a wheel of the checkout at ``root`` into ``out_dir``; return its path."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    files = package_files(root)
    digest = hashlib.sha256()
    for path in [root / "pyproject.toml", *files]:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    version = f"{project['version']}+g{digest.hexdigest()[:12]}"
    dist_info = f"voe-{version}.dist-info"
    entries: list[tuple[str, bytes]] = [
        (path.relative_to(root).as_posix(), path.read_bytes()) for path in files]
    entries.append((f"{dist_info}/METADATA", _metadata(project, version).encode()))
    entries.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: voe.cloud.package\n"
                    b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
    lines = [line for group, points in groups.items() if points for line in (
        f"[{group}]", *(f"{name} = {target}" for name, target in points.items()))]
    if lines:
        entries.append((f"{dist_info}/entry_points.txt", ("\n".join(lines) + "\n").encode()))
    entries.append((f"{dist_info}/top_level.txt", b"voe\n"))
    record = [f"{name},sha256={_hash(data)},{len(data)}" for name, data in entries]
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"voe-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return wheel


def deploy_package(named: str, out_dir: Path) -> Path:
    """The package to install: the one ``named`` (VOE_DEPLOY_PACKAGE), else a fresh wheel."""
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise CloudConfigError(f"VOE_DEPLOY_PACKAGE {path} does not exist")
        if not path.name.endswith((".whl", ".tar.gz", ".zip")):
            raise CloudConfigError(f"VOE_DEPLOY_PACKAGE {path}: expected a wheel (.whl) or an "
                                   "sdist (.tar.gz)")
        return path
    return build_wheel(source_root(), out_dir)


def _metadata(project: dict, version: str) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {version}"]
    if "description" in project:
        lines.append(f"Summary: {project['description']}")
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {requirement}" for requirement in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        for requirement in requirements:
            spec, _, marker = requirement.partition(";")
            condition = f'extra == "{extra}"'
            if marker.strip():
                condition = f"({marker.strip()}) and {condition}"
            lines.append(f"Requires-Dist: {spec.strip()}; {condition}")
    return "\n".join(lines) + "\n"


def _hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
