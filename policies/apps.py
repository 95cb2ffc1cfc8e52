from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Policies"

    def ready(self) -> None:
        from common import events
        from common.events import EventType
        from policies import selectors, session_counters

        # Every process drops its copies the moment any process commits a change (this one at
        # the commit, the others on the event); the periodic re-check covers a lost event.
        events.subscribe(
            selectors.forget_cached_policies_of_event,
            EventType.POLICY_PUBLISHED,
            EventType.TOOL_POLICY_CHANGED,
        )
        # A held call's session-constraint counts are given back when its approval is denied or
        # expires: once, where the resolution committed (Redis is shared).
        events.subscribe(
            session_counters.refund_hold_of_event,
            EventType.APPROVAL_RESOLVED,
            EventType.APPROVAL_EXPIRED,
            reach=events.Reach.ONE_PROCESS,
        )
