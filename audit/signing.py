"""Ed25519 keys and signatures for chain checkpoints. Pure: no Django (the key file's path comes
from the caller), so an auditor's script can import ``verify_checkpoint`` as it is.

The private key lives in a file outside the database: whoever can rewrite the database cannot
also forge a checkpoint. The file holds the raw 32-byte seed or a PEM (PKCS#8) private key.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(Exception):
    """The key file exists but holds no usable Ed25519 private key."""


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``; a new one is written there (mode 0600) when the file is missing.

    Web, worker and beat start together (``make run``) and may all find the file missing. Each
    writes its key to a temporary file beside it (0600, fsynced) and hard-links that into place:
    the link fails if another process got there first, and then its key is read instead. The
    file therefore appears complete or not at all; nobody reads a half-written key."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        # mkstemp creates the file 0600 with O_EXCL, in the same directory (a link cannot cross
        # file systems).
        fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(_raw_seed(key))
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(staged, path)
            except FileExistsError:
                data = path.read_bytes()
            else:
                _fsync_directory(path.parent)
                return key
        finally:
            os.unlink(staged)
    return _parse_key(data, path)


def _raw_seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _fsync_directory(directory: Path) -> None:
    # The new name survives a crash only once its directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
