"""Replace the key that signs chain checkpoints, and sign every chain's head with the new one.

The old key file is kept beside the new one (``<file>.retired-<time>``, 0600). Right after the
rotation every head is signed with the new key, so ``verify_audit`` holds each chain to the new
key at once; running processes pick the new file up on their next checkpoint (no restart).
Checkpoints the old key signed stay in the database and in exports: an auditor who should still
accept them, and this installation (``VETO_AUDIT_RETIRED_PUBLIC_KEYS``), must be told its public
key, printed here. After a compromise, trust it nowhere: the new checkpoints cover the chains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import checkpoints_sign_due
from audit.signing import SigningKeyError, public_key_hex, rotate_signing_key


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(settings.AUDIT_SIGNING_KEY_FILE)
        if not path.exists():
            raise CommandError(f"no signing key at {path}: nothing to rotate (one is made on first use)")
        try:
            old, new, retired = rotate_signing_key(path)
        except (SigningKeyError, OSError) as exc:
            raise CommandError(f"the key was not rotated: {exc}") from exc
        signed = checkpoints_sign_due()
        self.stdout.write(f"new signing key {public_key_hex(new)} in {path}")
        self.stdout.write(f"retired key {public_key_hex(old)} kept in {retired}")
        self.stdout.write(f"signed {len(signed)} chain head(s) with the new key")
        self.stdout.write(
            "Give auditors the new public key. To keep accepting checkpoints the retired key signed "
            "(older exports, restored backups), add its public key to VETO_AUDIT_RETIRED_PUBLIC_KEYS."
        )
