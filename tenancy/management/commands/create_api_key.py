from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.errors import ApplicationError
from tenancy.models import Membership
from tenancy.selectors import personal_key_scopes_allowed, team_get_by_slug
from tenancy.services import (
    ALL_SCOPES,
    DEFAULT_SCOPES,
    PERSONAL_DEFAULT_SCOPES,
    api_key_create,
    personal_api_key_create,
)


class Command(BaseCommand):
    help = (
        "Create an API key for a team, or with --user a personal key that acts as that person, "
        "and print it (alone, on the last line). It is shown only once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="team slug")
        parser.add_argument("--name", required=True, help="a name to recognise the key by")
        parser.add_argument(
            "--user",
            help=(
                "username: a personal key of this member of the team, holding at most their rights "
                "(the only kind of key that resolves approvals)"
            ),
        )
        parser.add_argument(
            "--scopes",
            help=(
                f"comma-separated scopes (default: {','.join(DEFAULT_SCOPES)}; with --user: "
                f"{','.join(PERSONAL_DEFAULT_SCOPES)}); 'all' for every scope ({', '.join(ALL_SCOPES)}), "
                "or with --user every scope that person may hold"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            team = team_get_by_slug(slug=options["team"])
            if options["user"]:
                user = get_user_model().objects.filter(username=options["user"]).first()
                if user is None:
                    raise CommandError(f"user {options['user']!r} does not exist")
                scopes = self._scopes(options["scopes"], all_scopes=self._allowed(user, team))
                api_key, token = personal_api_key_create(
                    user=user, team=team, name=options["name"], scopes=scopes
                )
            else:
                scopes = self._scopes(options["scopes"], all_scopes=ALL_SCOPES)
                api_key, token = api_key_create(team=team, name=options["name"], scopes=scopes)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        owner = f" for {api_key.user.get_username()}" if api_key.user is not None else ""
        self.stderr.write(
            f"Created key {api_key.prefix}…{owner} for team {team.slug} with scopes {', '.join(api_key.scopes)}"
        )
        self.stdout.write(token)

    @staticmethod
    def _scopes(value: str | None, *, all_scopes: tuple[str, ...]) -> list[str] | None:
        if value is None:
            return None  # the service's default for the kind of key
        if value == "all":
            return list(all_scopes)
        return [scope.strip() for scope in value.split(",") if scope.strip()]

    @staticmethod
    def _allowed(user: Any, team: Any) -> tuple[str, ...]:
        role = Membership.objects.filter(user=user, team=team).values_list("role", flat=True).first()
        return tuple(sorted(personal_key_scopes_allowed(role=role, is_staff=user.is_staff)))
