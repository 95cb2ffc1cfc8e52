from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    """The SDK's hot path: gateway, validate, the decision writer and long-poll waiters."""

    name = "runtime"
    verbose_name = "Runtime"

    def ready(self) -> None:
        from runtime import (
            event_stream,
            openapi,  # noqa: F401 - registers the OpenAPI authentication extension
            waiters,
        )

        waiters.register()
        event_stream.register()
        # Embedded mode: the process keeping session counts reads held calls' approvals itself
        # (policies may not import approvals; runtime, above both, joins them).
        from approvals.selectors import approval_statuses_of
        from policies.session_counters import register_hold_status_reader

        register_hold_status_reader(approval_statuses_of)
