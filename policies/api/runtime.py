"""Gateway endpoints for the SDK's hot path (see common/gateway.py for why they bypass Django's stack)."""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict

from common.errors import InvalidInput, NotFound, PermissionDenied
from common.events import rule_set_group, subscribe
from common.gateway import GatewayRequest, GatewayResponse, run_db
from policies import selectors, services
from policies.api.schemas import (
    ApiModeValidateRequest,
    ApiModeValidateResponse,
    ToolCallValidateRequest,
    ToolCallValidateResponse,
)
from policies.engine import CompiledRuleSet, RuleSetError, compile_rule_set, normalize_rule_set
from policies.engine.errors import RuleSetTooLarge
from policies.limits import RuleSetTooLargeError, inline_rule_limits
from policies.models import RuleSetVersion
from tenancy.authentication import authenticate_gateway_request
from tenancy.models import ApiKey

MAX_WAIT_SECONDS = 60


async def tool_call_validate(request: GatewayRequest) -> GatewayResponse:
    """Decide one tool call: allow, deny or require_approval (with the approval to poll)."""
    started = time.perf_counter()
    principal = await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    data = request.parse(ToolCallValidateRequest)
    outcome = await services.tool_call_validate(
        principal=principal,
        tool_name=data.tool_name,
        arguments=data.arguments,
        context=data.context or {},
        started=started,
    )
    return GatewayResponse(200, ToolCallValidateResponse.from_outcome(outcome))


# API-mode SDKs send the same rules with every call: compile each distinct set once. Only the
# event loop touches this map; a new set is compiled on a worker thread (it can take tens of
# ms, which the loop must not spend: every gateway request waits on it).
_inline_rules: OrderedDict[str, CompiledRuleSet] = OrderedDict()
_INLINE_RULE_SETS_KEPT = 256


def _compile_inline_rules(canonical_rules: str) -> CompiledRuleSet:
    limits = inline_rule_limits()
    return compile_rule_set(normalize_rule_set({"rules": json.loads(canonical_rules)}, limits=limits))


async def _compiled_inline_rules(canonical_rules: str) -> CompiledRuleSet:
    compiled = _inline_rules.get(canonical_rules)
    if compiled is None:
        compiled = await run_db(_compile_inline_rules, canonical_rules)
        _inline_rules[canonical_rules] = compiled
        if len(_inline_rules) > _INLINE_RULE_SETS_KEPT:
            _inline_rules.popitem(last=False)
    else:
        _inline_rules.move_to_end(canonical_rules)
    return compiled


async def api_mode_validate(request: GatewayRequest) -> GatewayResponse:
    """The docs' API-mode request: decide with the rules sent (or the team's active set).

    Rules sent inline replace the team's for this call, so they take a key holding
    ``rules:inline`` as well as ``runtime``, and the decision is recorded as source
    ``inline_rules`` with the SHA-256 of the rules' canonical JSON."""
    started = time.perf_counter()
    principal = await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    data = request.parse(ApiModeValidateRequest)
    rules = None
    rules_hash = None
    if data.rules is not None:
        if not principal.has_scope(ApiKey.Scope.INLINE_RULES):
            raise PermissionDenied(
                f"rules: deciding with rules sent in the request takes an API key with the "
                f"{ApiKey.Scope.INLINE_RULES} scope; without rules, the team's active rule set decides",
                details={"missing_scope": ApiKey.Scope.INLINE_RULES},
            )
        # The chain's canonical form (audit.chain.canonical): sorted keys, no whitespace, ASCII.
        canonical = json.dumps(data.rules, sort_keys=True, separators=(",", ":"))
        rules_hash = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        try:
            rules = await _compiled_inline_rules(canonical)
        except RuleSetTooLarge as exc:
            raise RuleSetTooLargeError(exc, what="inline rules") from exc
        except RuleSetError as exc:
            errors = [problem.as_dict() for problem in exc.problems]
            raise InvalidInput(
                f"the rules have {len(errors)} problem(s): {exc}",
                code="invalid_rule_set",
                details={"errors": errors},
                extra={"errors": errors},
            ) from exc
    call = data.context
    context = call.model_dump(exclude={"tool_name", "arguments"}, exclude_none=True)
    outcome = await services.tool_call_validate(
        principal=principal,
        tool_name=call.tool_name,
        arguments=call.arguments,
        context=context,
        started=started,
        rules=rules,
        rules_hash=rules_hash,
    )
    return GatewayResponse(200, ApiModeValidateResponse.from_outcome(outcome))


def _wanted_format(accept: str | None) -> str | None:
    accept = (accept or "").lower()
    if "yaml" in accept:
        return RuleSetVersion.SourceFormat.YAML
    if "json" in accept:
        return RuleSetVersion.SourceFormat.JSON
    return None


def _entity_tags(header: str | None) -> set[str]:
    # If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" matches "x".
    return {tag.strip().removeprefix("W/") for tag in (header or "").split(",") if tag.strip()}


def _wait_seconds(request: GatewayRequest) -> float:
    raw = request.query("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError as exc:
        raise InvalidInput(f"wait: {raw!r} is not a number of seconds") from exc
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise InvalidInput(f"wait: must be between 0 and {MAX_WAIT_SECONDS} seconds")
    return seconds


async def rule_set_active(request: GatewayRequest) -> GatewayResponse:
    """The active rule set as YAML or JSON (by ``Accept``) with a strong ETag; ``If-None-Match``
    answers 304, and with ``?wait=SECONDS`` (at most 60) the answer waits for a newer version."""
    principal = await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    wanted = _wanted_format(request.header("accept"))
    known = _entity_tags(request.header("if-none-match"))
    wait = _wait_seconds(request)

    def current() -> selectors.RuleSetRepresentation | None:
        return selectors.active_rule_set_representation(team_id=principal.team_id, wanted=wanted)

    active = await run_db(current)
    unchanged = active is not None and (active.etag in known or "*" in known)
    if wait > 0 and (unchanged or active is None):
        deadline = time.monotonic() + wait
        async with subscribe(rule_set_group(principal.team_id)) as events:
            # Subscribed first, then re-read: a publish in between is not missed.
            active = await run_db(current)
            while active is None or active.etag in known:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or await events.next(remaining) is None:
                    break
                active = await run_db(current)
        # The key may have been revoked while this waited: answer as a new request would.
        await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    if active is None:
        raise NotFound("this team has no active rule set")
    headers = [
        (b"etag", active.etag.encode()),
        (b"vary", b"Accept"),
        (b"cache-control", b"no-cache"),
        (b"x-veto-rule-set-version", str(active.version).encode()),
    ]
    if active.etag in known or "*" in known:
        return GatewayResponse(304, b"", headers=headers)
    return GatewayResponse(200, active.body, headers=headers, content_type=active.content_type.encode())
