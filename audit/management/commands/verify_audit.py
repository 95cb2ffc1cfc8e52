"""Verify a team's tamper-evident chain: ``OK <count> records, head <hash>`` (exit 0), or the
first broken sequence and why (exit 1)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import ChainStream
from audit.services import chain_verify
from tenancy.models import Team


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="the team's slug")
        parser.add_argument("--since", type=int, default=1, help="first sequence to check (default 1)")
        parser.add_argument(
            "--stream",
            choices=[c.value for c in ChainStream],
            default=ChainStream.DECISIONS,
            help="decisions (default) or events (approval actions, publishes, tool-policy changes)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            raise CommandError(f"no team with slug {options['team']!r}")
        if options["since"] < 1:
            raise CommandError("--since must be 1 or more")
        result = chain_verify(team_id=team.id, stream=options["stream"], since=options["since"])
        if result.ok:
            self.stdout.write(f"OK {result.count} records, head {result.head_hash or '(empty chain)'}")
            return
        self.stderr.write(
            f"BROKEN at sequence {result.broken_at}: {result.problem} "
            f"({result.count} records verified before it)"
        )
        raise SystemExit(1)
