from celery import shared_task

from audit.checkpoints import checkpoints_sign_due


@shared_task(name="audit.tasks.sign_checkpoints", acks_late=True, ignore_result=True)
def sign_checkpoints() -> int:
    """Beat: sign the head of every chain that moved since its last checkpoint (idempotent)."""
    return len(checkpoints_sign_due())
