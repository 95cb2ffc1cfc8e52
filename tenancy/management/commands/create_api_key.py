from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.errors import ApplicationError
from tenancy.selectors import team_get_by_slug
from tenancy.services import ALL_SCOPES, DEFAULT_SCOPES, api_key_create


class Command(BaseCommand):
    help = "Create an API key for a team and print it (alone, on the last line). It is shown only once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="team slug")
        parser.add_argument("--name", required=True, help="a name to recognise the key by")
        parser.add_argument(
            "--scopes",
            default=",".join(DEFAULT_SCOPES),
            help=f"comma-separated scopes (default: %(default)s; 'all' for every scope: {', '.join(ALL_SCOPES)})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scopes = (
            list(ALL_SCOPES) if options["scopes"] == "all" else [s for s in options["scopes"].split(",") if s]
        )
        try:
            team = team_get_by_slug(slug=options["team"])
            api_key, token = api_key_create(team=team, name=options["name"], scopes=scopes)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(
            f"Created key {api_key.prefix}… for team {team.slug} with scopes {', '.join(api_key.scopes)}"
        )
        self.stdout.write(token)
