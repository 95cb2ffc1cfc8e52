"""``POST /v1/tools/validate`` and ``POST /v1/validate``: the HTTP edge of runtime/validate.py."""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict

from common.database import run_in_db_thread
from common.errors import InvalidInput
from policies.engine import CompiledRuleSet, RuleSetError, compile_rule_set, normalize_rule_set
from policies.engine.errors import RuleSetTooLarge
from policies.limits import RuleSetTooLargeError, inline_rule_limits
from runtime import validate
from runtime.authentication import authenticate_gateway_request
from runtime.gateway import GatewayRequest, GatewayResponse
from runtime.schemas import (
    ApiModeValidateRequest,
    ApiModeValidateResponse,
    ToolCallValidateRequest,
    ToolCallValidateResponse,
)
from tenancy.models import ApiKey
from tenancy.scopes import require_scopes


async def tool_call_validate(request: GatewayRequest) -> GatewayResponse:
    """Decide one tool call: allow, deny or require_approval (with the approval to poll)."""
    started = time.perf_counter()
    principal = await authenticate_gateway_request(request, scope=ApiKey.Scope.RUNTIME)
    data = request.parse(ToolCallValidateRequest)
    outcome = await validate.tool_call_validate(
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
        compiled = await run_in_db_thread(_compile_inline_rules, canonical_rules)
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
        require_scopes(
            principal,
            (ApiKey.Scope.INLINE_RULES,),
            because="deciding with the rules sent in the request needs it; without rules, "
            "the team's active rule set decides",
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
    outcome = await validate.tool_call_validate(
        principal=principal,
        tool_name=call.tool_name,
        arguments=call.arguments,
        context=context,
        started=started,
        rules=rules,
        rules_hash=rules_hash,
    )
    return GatewayResponse(200, ApiModeValidateResponse.from_outcome(outcome))
