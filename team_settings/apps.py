from django.apps import AppConfig


class TeamSettingsConfig(AppConfig):
    """Team admins' settings page: members and roles, approver groups, the team's options and
    members' keys; every change written to the team's governance trail (audit)."""

    name = "team_settings"
    verbose_name = "Team settings"
