"""The dashboard's websocket: authenticated by the session, joined to the groups of the teams its
person may see, forwarding what ``dashboards.live.LiveView`` renders for the page.

It holds no rules: what a batch means for the page is LiveView's, who may see a team is
tenancy's (re-read every few seconds, and at once when a batch changes a team's members, so a
person removed from a team, signed out or deactivated stops receiving it), and the rows come from the database through
dashboards.selectors when the page missed some.

Both reads are shared by the process's sockets (``live.SharedReads``): one read of a person's
teams per session and interval, not one per socket, and one fill per team and gap. Each socket
still decides for itself from the answer (and closes itself: 4403, 4401).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from common import metrics
from dashboards import live, rendering, selectors

# Close codes (4000-4999 are the application's): htmx's websocket extension reconnects only
# after abnormal closes, so these end the socket for good.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_BAD_REQUEST = 4400


# (user id, session key) -> the teams (slug -> id) the person may see, read at most once per
# recheck interval in this process, or again when a batch changes their membership.
MEMBERSHIP: live.SharedReads[tuple[int, str | None], dict[str, uuid.UUID]] = live.SharedReads(
    keep_seconds=live.MEMBERSHIP_RECHECK_SECONDS
)
# Gap.key() -> (the rows, rendered once, and whether that is all of them).
FILLS: live.SharedReads[tuple[uuid.UUID, int, int | None], tuple[list[live.LiveRow], bool]] = (
    live.SharedReads(keep_seconds=live.FILL_KEEP_SECONDS)
)


def _fill_rows(gap: live.Gap) -> tuple[list[live.LiveRow], bool]:
    decisions, complete = selectors.decisions_after(
        team_id=gap.team_id, after=gap.after, upto=gap.upto, limit=live.GAP_FILL_LIMIT
    )
    slugs = selectors.team_slugs_of(team_ids={gap.team_id})
    return rendering.live_rows(decisions, team_slugs=slugs), complete


class LiveConsumer(AsyncWebsocketConsumer):
    view: live.LiveView | None = None
    _hole_timer: asyncio.Task[None] | None = None
    _turn: asyncio.Lock | None = None
    # Counted in /metrics' veto_event_stream_clients from the accept of a subscription to the close.
    _counted = False

    async def dispatch(self, message: dict[str, Any]) -> None:
        """channels' own dispatch, less its ``close_old_connections`` before every message: that is
        a hop to Django's one thread-sensitive thread per socket and batch (200 pages: 2,000 a
        second, queued behind every sync view), the first cost of the fan-out after the reads.
        This consumer touches the database only through ``database_sync_to_async``, which closes
        stale connections in its own thread. One message at a time (``_turn``): a hole check
        from this socket's timer never runs in the middle of a batch."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            await handler(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        visible = await database_sync_to_async(selectors.visible_teams_of)(user_id=user.pk)
        try:
            subscription = live.subscription_from(
                user_id=user.pk, visible_teams=visible, params=live.parse_query(self.scope["query_string"])
            )
        except live.BadSubscription:
            await self._refuse(CLOSE_BAD_REQUEST)
            return
        self.view = live.LiveView(subscription)
        for group in subscription.groups():
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self._counted = True
        metrics.EVENT_STREAM_CLIENTS["dashboard_websocket"].inc()
        heads: tuple[int | None, int | None] = (None, None)
        if subscription.page_team_id is not None:
            heads = await database_sync_to_async(selectors.chain_heads_of)(team_id=subscription.page_team_id)
        await self._apply(
            self.view.on_connect(decisions_head=heads[0], events_head=heads[1], now=time.monotonic())
        )

    async def _refuse(self, code: int) -> None:
        # Accepted, then closed with a code of ours: a refused handshake reaches the page as an
        # abnormal close (1006), which htmx's extension would retry for ever.
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self._counted:
            self._counted = False
            metrics.EVENT_STREAM_CLIENTS["dashboard_websocket"].dec()
        if self._hole_timer is not None:
            self._hole_timer.cancel()
        if self.view is not None:
            for group in self.view.subscription.groups():
                await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Pages send nothing; whatever arrives is ignored."""

    async def live_batch(self, message: dict[str, Any]) -> None:
        if self.view is None:
            return
        batch = live.LiveBatch.decode(message)
        # The process's clock of the batch, not this socket's: its sockets' holes come due together.
        update = self.view.on_batch(batch, now=batch.received)
        if update.recheck_membership:
            lost = await self._recheck_membership(not_before=update.membership_not_before)
            if lost is None or batch.team_id in lost:
                return
        await self._apply(update)

    async def _apply(self, update: live.Update) -> None:
        assert self.view is not None
        if update.gap is not None:
            gap = update.gap
            _, (rows, complete) = await FILLS.get(
                gap.key(), not_before=gap.not_before, read=lambda: database_sync_to_async(_fill_rows)(gap)
            )
            filled = self.view.filled(rows, gap=gap, complete=complete)
            update.rows = update.rows + filled.rows
            update.changed |= filled.changed
            update.reload_rows = filled.reload_rows
        message = self.view.render(update)
        if message is not None:
            await self.send(text_data=message)
        if self.view.hole_since is not None and self._hole_timer is None:
            self._hole_timer = asyncio.get_running_loop().create_task(self._hole_check_later())

    async def _hole_check_later(self) -> None:
        # A hole is otherwise looked at only when the next batch comes, which on a quiet team
        # may be never. The check takes its turn like a message (dispatch), so it never runs in
        # the middle of a batch; not through the channel layer, which with Redis is a publish
        # per socket.
        await asyncio.sleep(live.HOLE_GRACE_SECONDS + 0.05)
        self._hole_timer = None
        await self.dispatch({"type": "live.hole_check"})

    async def live_hole_check(self, message: dict[str, Any]) -> None:
        if self.view is None:
            return
        gap = self.view.hole_due(now=time.monotonic())
        await self._apply(live.Update(gap=gap))

    async def _recheck_membership(self, *, not_before: float) -> frozenset[Any] | None:
        """Leave the groups of teams the person may no longer see; None when that ended the socket.

        From a read of their teams that started at or after ``not_before``, shared with the
        process's other sockets of the same session; the socket's next recheck is due one
        interval after that read started, so no socket goes longer than that on older data."""
        assert self.view is not None
        user_id = self.view.subscription.user_id
        session_key = getattr(self.scope.get("session"), "session_key", None)
        started, visible = await MEMBERSHIP.get(
            (user_id, session_key),
            not_before=not_before,
            read=lambda: database_sync_to_async(selectors.visible_teams_of)(
                user_id=user_id, session_key=session_key
            ),
        )
        page_team = self.view.subscription.page_team_id
        lost = self.view.membership_checked(frozenset(visible.values()), now=started)
        for team_id in lost:
            await self.channel_layer.group_discard(live.team_group(team_id), self.channel_name)
        if page_team is not None and page_team in lost:
            await self.close(code=CLOSE_FORBIDDEN if visible else CLOSE_UNAUTHENTICATED)
            return None
        if not visible:  # signed out, deactivated, or in no team any more
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return None
        return lost
