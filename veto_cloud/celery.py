import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.local")

app = Celery("veto_cloud")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule_periodic_tasks(sender: Celery, **_: object) -> None:
    from django.conf import settings

    # Time-based state lives in the database; beat sweeps it, so a lost ETA task or a
    # worker that was down still expires approvals once it is back.
    sender.add_periodic_task(
        settings.APPROVAL_SWEEP_SECONDS,
        sender.signature("approvals.tasks.expire_due_approvals"),
        name="approvals: expire due approvals",
    )
    sender.add_periodic_task(
        settings.AUDIT_CHECKPOINT_SECONDS,
        sender.signature("audit.tasks.sign_checkpoints"),
        name="audit: sign chain checkpoints",
    )
