"""An instance's SSH host key fingerprints, as its EC2 console output lists them.

cloud-init prints the machine's host key fingerprints (``256 SHA256:... root@host
(ED25519)``, MD5 ``aa:bb:...`` on old images, lines maybe prefixed ``ec2:``) between
``-----BEGIN SSH HOST KEY FINGERPRINTS-----`` and its END line, and the public keys
themselves between ``-----BEGIN SSH HOST KEY KEYS-----`` and its END line. The console
output comes from the hypervisor, not over the network, so it tells which key the
machine really has before voe sends it anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import paramiko

FINGERPRINTS_BLOCK = re.compile(r"-----BEGIN SSH HOST KEY FINGERPRINTS-----(.*?)"
                                r"-----END SSH HOST KEY FINGERPRINTS-----", re.S)
KEYS_BLOCK = re.compile(r"-----BEGIN SSH HOST KEY KEYS-----(.*?)-----END SSH HOST KEY KEYS-----",
                        re.S)
SHA256 = re.compile(r"SHA256:([A-Za-z0-9+/]{43})")
MD5 = re.compile(r"(?<![0-9a-fA-F:])((?:[0-9a-fA-F]{2}:){15}[0-9a-fA-F]{2})(?![0-9a-fA-F:])")
KEY_LINE = re.compile(r"((?:ssh|ecdsa|sk)-[\w@.-]+)\s+([A-Za-z0-9+/]+={0,2})")


def listed(console_output: str) -> frozenset[str]:
    """The fingerprints (``SHA256:...``, ``MD5:...``) the console output gives, maybe none."""
    found: set[str] = set()
    for block in FINGERPRINTS_BLOCK.findall(console_output):
        found.update(f"SHA256:{digest}" for digest in SHA256.findall(block))
        found.update(f"MD5:{digest.lower()}" for digest in MD5.findall(block))
    for block in KEYS_BLOCK.findall(console_output):
        for kind, text in KEY_LINE.findall(block):
            blob = _key_blob(kind, text)
            if blob is not None:
                found.add(_sha256(blob))
    return frozenset(found)


def sha256(key: paramiko.PKey) -> str:
    """The key's fingerprint as OpenSSH shows it: ``SHA256:`` and unpadded base64."""
    return _sha256(key.asbytes())


def matches(key: paramiko.PKey, expected: frozenset[str]) -> bool:
    """True when ``key`` is one of the keys whose fingerprints are ``expected``."""
    md5 = ":".join(f"{byte:02x}" for byte in hashlib.md5(key.asbytes()).digest())
    return sha256(key) in expected or f"MD5:{md5}" in expected


def _key_blob(kind: str, text: str) -> bytes | None:
    """The key's bytes, or None when the line was cut (they do not start with its type)."""
    try:
        blob = base64.b64decode(text, validate=True)
    except binascii.Error:
        return None
    named = kind.encode()
    return blob if blob[4:4 + len(named)] == named and int.from_bytes(
        blob[:4], "big") == len(named) else None


def _sha256(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
