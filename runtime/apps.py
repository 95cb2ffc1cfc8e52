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
