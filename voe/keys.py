"""CURVE key pairs of a voe cluster: made by ``voe keys init``, read by every role.

Layout of the keys directory (``VOE_KEYS_DIR``, else ``keys/`` in the data dir)::

    master.key  master.key_secret     the master's server key pair
    sink.key    sink.key_secret       the sink's server key pair
    client.key  client.key_secret     the client key pair of workers (and the sink)
    authorized/*.key                  public keys of the clients the servers admit

Every file is mode 0600 and the directories 0700. Secret keys stay in these
files: they never go into settings, the environment, arguments or logs.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import zmq.auth

from voe import private
from voe.settings import Settings

SERVERS = ("master", "sink")
CLIENT = "client"
AUTHORIZED = "authorized"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class KeysError(Exception):
    """Keys are missing or unreadable; the message tells the user what to run."""


def keys_dir(settings: Settings) -> Path:
    """The keys directory of these settings."""
    configured = settings.voe_keys_dir
    return Path(configured).expanduser() if configured else settings.data_dir / "keys"


def _private_dir(path: Path) -> None:
    private.make_dir(path)
    path.chmod(0o700)  # also an existing folder: it holds secret keys


def _make_pair(directory: Path, name: str) -> None:
    """Write ``name.key`` and ``name.key_secret`` in ``directory``, both mode 0600."""
    old_umask = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old_umask)
    for path in (public, secret):
        Path(path).chmod(0o600)


def _authorize(directory: Path, name: str) -> Path:
    target = directory / AUTHORIZED / f"{name}.key"
    shutil.copyfile(directory / f"{name}.key", target)
    target.chmod(0o600)
    return target


def init(directory: Path) -> list[str]:
    """Create the key pairs that are missing in ``directory``; return the names created."""
    _private_dir(directory)
    _private_dir(directory / AUTHORIZED)
    ignore = directory / ".gitignore"
    if not ignore.exists():  # secret keys must never be committed by a `git add .`
        ignore.write_text("# Secret CURVE keys: never commit this folder.\n*\n")
        ignore.chmod(0o600)  # like everything in the folder
    created = []
    for name in (*SERVERS, CLIENT):
        if not (directory / f"{name}.key_secret").is_file():
            _make_pair(directory, name)
            created.append(name)
    if CLIENT in created or not (directory / AUTHORIZED / f"{CLIENT}.key").is_file():
        _authorize(directory, CLIENT)
    return created


def add_client(directory: Path, name: str) -> Path:
    """Make a new client key pair ``name`` and admit its public key; return the secret file.

    Running servers re-read the authorized folder, so the new client is admitted
    without a restart.
    """
    if not _NAME.fullmatch(name) or name in (*SERVERS, CLIENT):
        raise KeysError(f"{name!r} is not a usable client key name (letters, digits, . _ -; "
                        f"not {', '.join((*SERVERS, CLIENT))})")
    if not (directory / AUTHORIZED).is_dir():
        raise KeysError(f"no keys in {directory}: run `voe keys init` first")
    if (directory / f"{name}.key_secret").exists():
        raise KeysError(f"a client key {name} already exists in {directory}")
    _make_pair(directory, name)
    _authorize(directory, name)
    return directory / f"{name}.key_secret"


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise KeysError(f"no CURVE key {path}: run `voe keys init` (or set VOE_CURVE=off)")
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as error:
        raise KeysError(f"cannot read the CURVE key {path}: {type(error).__name__}") from None
    if secret and not secret_key:
        raise KeysError(f"{path} holds no secret key: run `voe keys init`")
    return public, secret_key


def server_keys(directory: Path, server: str) -> tuple[bytes, bytes]:
    """The public and secret key of ``server`` (master or sink)."""
    public, secret = _load(directory / f"{server}.key_secret", secret=True)
    assert secret is not None
    return public, secret


def client_keys(directory: Path, server: str) -> tuple[bytes, bytes, bytes]:
    """The public key of ``server``, and this client's public and secret key."""
    server_public, _ = _load(directory / f"{server}.key", secret=False)
    public, secret = _load(directory / f"{CLIENT}.key_secret", secret=True)
    assert secret is not None
    return server_public, public, secret


# The key files each role's machine needs, besides (for servers) the admitted keys.
ROLE_FILES = {
    "master": ("master.key", "master.key_secret"),
    "sink": ("sink.key", "sink.key_secret", "master.key", "client.key", "client.key_secret"),
    "worker": ("master.key", "sink.key", "client.key", "client.key_secret"),
}


def bundle(directory: Path, role: str, client: str = CLIENT) -> dict[str, str]:
    """What a machine of ``role`` needs from ``directory``: relative path -> file text.

    Servers (master, sink) also get every admitted client key. A worker gets the
    ``client`` key pair (its own, from ``add_client``) under the shared pair's names,
    so it runs unchanged. The fleet copies this over SSH; it never goes into tags,
    user data, settings or logs.
    """
    names = {name: name for name in ROLE_FILES[role]}
    if role == "worker":
        names.update({f"{CLIENT}.key": f"{client}.key",
                      f"{CLIENT}.key_secret": f"{client}.key_secret"})
    if role in SERVERS:
        names.update({f"{AUTHORIZED}/{path.name}": f"{AUTHORIZED}/{path.name}"
                      for path in sorted((directory / AUTHORIZED).glob("*.key"))})
    files = {}
    for target, name in names.items():
        path = directory / name
        if not path.is_file():
            raise KeysError(f"no CURVE key {path}: run `voe keys init`")
        files[target] = path.read_text(encoding="ascii")
    return files


def ensure_client(directory: Path, name: str) -> bool:
    """Make and admit the client key ``name`` unless it exists; True when it was made."""
    if (directory / f"{name}.key_secret").is_file():
        return False
    add_client(directory, name)
    return True


def admitted_key(directory: Path, name: str) -> str:
    """The text of the admitted public key of client ``name`` (for a server's folder)."""
    return (directory / AUTHORIZED / f"{name}.key").read_text(encoding="ascii")


def authorized_dir(directory: Path) -> Path:
    """The folder of admitted client public keys."""
    return directory / AUTHORIZED


def require(settings: Settings, role: str) -> None:
    """Raise ``KeysError`` unless every key ``role`` needs is there (when CURVE is on)."""
    if not settings.voe_curve:
        return
    directory = keys_dir(settings)
    needed = {"master": ["master.key_secret", AUTHORIZED],
              "sink": ["sink.key_secret", AUTHORIZED, "master.key", "client.key_secret"],
              "worker": ["master.key", "sink.key", "client.key_secret"]}[role]
    for name in needed:
        if not (directory / name).exists():
            raise KeysError(f"no CURVE keys for the {role} in {directory} (missing {name}): "
                            "run `voe keys init` (or set VOE_CURVE=off)")
