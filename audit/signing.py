"""Ed25519 keys and signatures for chain checkpoints. Pure: no Django (the key file's path comes
from the caller), so an auditor's script can import ``verify_checkpoint`` as it is.

The private key lives in a file outside the database: whoever can rewrite the database cannot
also forge a checkpoint. The file holds the raw 32-byte seed or a PEM (PKCS#8) private key.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(Exception):
    """The key file exists but holds no usable Ed25519 private key."""


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``; a new one is written there (mode 0600) when the file is missing."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        try:
            # O_EXCL: two processes starting at once must not each write a different key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            data = path.read_bytes()
        else:
            with os.fdopen(fd, "wb") as file:
                file.write(seed)
            return key
    return _parse_key(data, path)


def rotate_signing_key(path: Path) -> tuple[Ed25519PrivateKey, Ed25519PrivateKey, Path]:
    """Put a new key in ``path``; the old file stays as ``<name>.retired-<UTC time>`` (hard link).
    Returns (old key, new key, where the old one is kept). The key file is never missing in
    between (a process starting then would create a key of its own): the old file is linked
    aside first, then the new one renamed over it, atomically."""
    old = _parse_key(path.read_bytes(), path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    retired = path.with_name(f"{path.name}.retired-{stamp}")
    new = Ed25519PrivateKey.generate()
    staged = path.with_name(f"{path.name}.new-{stamp}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(
            new.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
        )
        file.flush()
        os.fsync(file.fileno())
    os.link(path, retired)
    os.replace(staged, path)
    return old, new, retired


def _parse_key(data: bytes, path: Path) -> Ed25519PrivateKey:
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{path}: not a readable unencrypted PEM private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{path}: the PEM key is not an Ed25519 key")
        return key
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    raise SigningKeyError(f"{path}: expected a raw 32-byte Ed25519 seed or a PEM private key")


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def sign(key: Ed25519PrivateKey, payload: str) -> str:
    """The hex signature of the payload's UTF-8 bytes."""
    return key.sign(payload.encode("utf-8")).hex()


def verify_checkpoint(payload: str, signature_hex: str, public_key_hex: str) -> bool:
    """Whether ``signature_hex`` is the Ed25519 signature of ``payload`` (its UTF-8 bytes) by the
    key ``public_key_hex`` (raw, 32 bytes). Malformed hex or keys are simply not valid."""
    try:
        public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        public_key.verify(bytes.fromhex(signature_hex), payload.encode("utf-8"))
    except (InvalidSignature, ValueError):
        return False
    return True
