"""Checkpoints on the beat schedule: a real Celery beat and worker sign a moved chain head, once."""

from __future__ import annotations

import os
import stat
import time

import pytest

from audit.checkpoints import signing_public_key_hex
from audit.models import Checkpoint
from audit.signing import verify_checkpoint
from conftest import start_celery_worker_and_beat, stop_processes, subprocess_environment
from tests.factories import TeamFactory, record_decision


@pytest.mark.django_db(transaction=True)
def test_beat__chain_head_moved__worker_signs_it_once_with_the_key_file(tmp_path, settings):
    # Given a team's chain and a key file that does not exist yet
    team = TeamFactory()
    records = [record_decision(team, arguments={"n": n}) for n in range(2)]
    key_file = tmp_path / "keys" / "audit.key"
    settings.AUDIT_SIGNING_KEY_FILE = key_file
    env = subprocess_environment(
        VETO_AUDIT_CHECKPOINT_SECONDS="1",
        VETO_AUDIT_SIGNING_KEY_FILE=str(key_file),
        VETO_VAR_DIR=str(tmp_path),
    )
    env.pop("REDIS_URL", None)

    # When a real beat and worker run for a few periods
    processes = start_celery_worker_and_beat(tmp_path, env)
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not Checkpoint.objects.filter(team=team).exists():
            time.sleep(0.25)
        time.sleep(3)  # three more beats: nothing new to sign
    finally:
        stop_processes(*processes)

    # Then the head was signed exactly once, by the key the worker created 0600 in that file
    logs = "\n".join(p.read_text() for p in (tmp_path / "worker.log", tmp_path / "beat.log"))
    checkpoints = list(Checkpoint.objects.filter(team=team))
    assert [(c.sequence, c.hash) for c in checkpoints] == [(2, records[-1].hash)], logs
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert verify_checkpoint(checkpoints[0].payload, checkpoints[0].signature, signing_public_key_hex())
