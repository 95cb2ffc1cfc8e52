from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "tenancy"
    verbose_name = "Tenancy (organizations, teams, API keys)"

    def ready(self) -> None:
        from tenancy import signals  # noqa: F401 - connects the receivers
