from celery import shared_task

from approvals.services import approvals_expire_due


@shared_task(name="approvals.tasks.expire_due_approvals", acks_late=True, ignore_result=True)
def expire_due_approvals() -> int:
    """Beat sweep: expire pending approvals whose deadline passed (idempotent)."""
    return approvals_expire_due()
