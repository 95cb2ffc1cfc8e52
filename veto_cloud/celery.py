import logging
import os

from celery import Celery, current_task
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    beat_init,
    before_task_publish,
    task_postrun,
    task_prerun,
)

from common import request_id
from common.logs import json_formatter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.local")

app = Celery("veto_cloud")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Packages inside apps whose tasks autodiscovery (each app's own tasks.py) does not reach.
app.autodiscover_tasks(["webhooks.slack"])


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
    # Webhooks: dispatch every team with enabled endpoints and send due deliveries no task took,
    # so a lost task or a broker outage only delays a notification.
    sender.add_periodic_task(
        settings.VETO_WEBHOOK_SWEEP_SECONDS,
        sender.signature("webhooks.tasks.sweep"),
        name="webhooks: dispatch and send what is due",
    )


@task_prerun.connect
@task_postrun.connect
def _connections_as_after_a_request(sender: object = None, **_: object) -> None:
    """What Django does around a request, around each task: connections that failed or outlived
    CONN_MAX_AGE are closed (with a pool: returned to it). Not for an eager task, which runs
    inside its caller's transaction (the tests')."""
    request = getattr(sender, "request", None)
    if getattr(request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


DUE_TASK_LINE = "Scheduler: Sending due task"


class QuietDueTasks(logging.Filter):
    """Beat logs "Scheduler: Sending due task ..." at INFO for every periodic task it sends: with
    the approval sweep every few seconds that buries the log of `make run`. The line is kept only
    when beat runs at DEBUG; everything else beat says (its start, warnings, errors, a task it
    failed to send) passes at the level it was logged, and the worker's log is untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and str(record.msg).startswith(DUE_TASK_LINE):
            return logging.getLogger("celery.beat").isEnabledFor(logging.DEBUG)
        return True


@beat_init.connect
def _quiet_due_task_lines(**_: object) -> None:
    # After Celery set up logging for --loglevel, before the first task is sent.
    logger = logging.getLogger("celery.beat")
    if not any(isinstance(f, QuietDueTasks) for f in logger.filters):
        logger.addFilter(QuietDueTasks())


# The request id (common/request_id.py) from the request that enqueued a task to the worker's log
# lines for it. weak=False: the receivers are module functions, kept for the process's life anyway.
before_task_publish.connect(request_id.put_in_task_headers, weak=False)
task_prerun.connect(request_id.take_from_task, weak=False)
task_postrun.connect(request_id.forget_after_task, weak=False)


class TaskFields(logging.Filter):
    """``task_id`` and ``task_name`` on a worker's records while a task runs (JSON lines carry
    them as fields; Celery's text format puts them in its task lines itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = current_task
        if task and task.request.id is not None:
            record.task_id = task.request.id
            record.task_name = task.name
        return True


@after_setup_logger.connect
@after_setup_task_logger.connect
def _json_lines(logger: logging.Logger, **_: object) -> None:
    """With VETO_LOG_FORMAT=json, the handlers Celery set up for its worker and beat (the root
    logger's, hijacked, and its task logger's) write JSON lines like every other process; with
    text, Celery's own formats stay as they are."""
    from django.conf import settings

    if settings.LOG_FORMAT != "json":
        return
    for handler in logger.handlers:
        handler.setFormatter(json_formatter())
        if not any(isinstance(f, request_id.RequestIdFilter) for f in handler.filters):
            handler.addFilter(request_id.RequestIdFilter())
            handler.addFilter(TaskFields())
