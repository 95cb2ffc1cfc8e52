"""Test helpers for tampering with, and verifying, a team's chain."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management import call_command
from django.db import connection


@contextmanager
def append_only_trigger_off() -> Iterator[None]:
    """Play an attacker with table rights: on PostgreSQL the append-only trigger would refuse
    (tests connect as a superuser, who may switch triggers off for the session)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        try:
            yield
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("SET session_replication_role = DEFAULT")


def verify_audit(team: object, *extra: str) -> tuple[int, str]:
    """``manage.py verify_audit --team``: its exit code and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", "--team", team.slug, *extra, stdout=out, stderr=err)  # type: ignore[attr-defined]
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, (out.getvalue() + err.getvalue()).strip()
