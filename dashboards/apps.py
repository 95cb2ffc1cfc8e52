from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    """The browser's dashboards: overview, decisions explorer, decision pages, and the live path
    that keeps them current (dashboards/live.py)."""

    name = "dashboards"

    def ready(self) -> None:
        from dashboards import sink

        sink.register()
