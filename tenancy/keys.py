"""API-key tokens: generation and hashing (pure functions, no database)."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "vk_"
PREFIX_LENGTH = 12
MIN_TOKEN_LENGTH = 32


def generate_token() -> str:
    # 32 random bytes: the hash below needs no salt or stretching at this entropy.
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_prefix(token: str) -> str:
    return token[:PREFIX_LENGTH]
