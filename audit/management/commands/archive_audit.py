"""Move the start of a team's chain (through --through) to an archive file, keeping the proof:
the file's entries verify with the SDK, and the chain left behind verifies from its anchor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.archive import chain_archive
from audit.models import ChainStream
from common.errors import ApplicationError
from tenancy.models import Team


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="the team's slug")
        parser.add_argument("--through", type=int, required=True, help="last sequence to archive")
        parser.add_argument("--to", type=Path, required=True, help="the archive file to write (JSON lines)")
        parser.add_argument("--stream", choices=[c.value for c in ChainStream], default=ChainStream.DECISIONS)

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            raise CommandError(f"no team with slug {options['team']!r}")
        if options["to"].exists():
            raise CommandError(f"{options['to']} exists; choose a new file")
        try:
            anchor = chain_archive(
                team_id=team.id, stream=options["stream"], through=options["through"], path=options["to"]
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"archived through {anchor.through_sequence} to {anchor.location} "
            f"(sha256 {anchor.file_sha256}); the chain now starts after {anchor.through_hash}"
        )
