"""The ``llmConfig`` of a per-tool policy with ``mode: "llm"``, checked when the policy is written.

The SDK's model (``veto.admin.LlmConfig``)::

    {description: str, exceptions: [str],
     argumentInstructions: [{argumentName, instruction}]?, preferredModel: str?}

The deterministic constraints still decide first; where they fail, a language model is asked
whether the call falls under one of ``exceptions`` (runtime/llm_exceptions.py). ``description``,
``exceptions`` and the instructions become the model's instructions, so they are the policy
author's words; the call's arguments never are.

Pure Python: no Django. ``normalize_llm_config`` reports every problem with its path
(``llmConfig.exceptions[2]``) and returns the stored form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from policies.engine.problems import ProblemSink

DESCRIPTION_MAX = 2_000
EXCEPTIONS_MAX = 50
EXCEPTION_MAX = 1_000
ARGUMENT_INSTRUCTIONS_MAX = 100
ARGUMENT_NAME_MAX = 200
INSTRUCTION_MAX = 1_000
MODEL_NAME_MAX = 200

LLM_CONFIG_KEYS = frozenset({"description", "exceptions", "argumentInstructions", "preferredModel"})
ARGUMENT_INSTRUCTION_KEYS = frozenset({"argumentName", "instruction"})

# Names as OpenAI-compatible servers spell them: "gpt-4o-mini", "llama3.1:8b",
# "meta-llama/Llama-3.1-8B-Instruct", "qwen2.5@q4". No spaces, quotes or control characters: the
# name is sent as is and shown in decisions.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")

# C0 controls and DEL, except tab and line breaks: nothing a person types into an instruction.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize_llm_config(raw: Any, path: str, problems: ProblemSink) -> dict[str, Any] | None:
    """The stored form of an ``llmConfig`` body (camelCase keys as the SDK sends them, the
    optional ones left out when absent or null), or None for null (whether a policy needs one is
    its mode's business) and for a body that is not an object. Every problem goes to
    ``problems`` with its path; the result is meaningful only when none was added."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.add(path, "llmConfig must be an object with description and exceptions")
        return None
    for key in raw:
        if key not in LLM_CONFIG_KEYS:
            problems.add(
                f"{path}.{key}",
                f"unknown llmConfig key {key!r}; expected one of {', '.join(sorted(LLM_CONFIG_KEYS))}",
            )
    out: dict[str, Any] = {}
    description = raw.get("description")
    if description is None:
        problems.add(
            f"{path}.description", "description is required: what the tool does and what is at stake"
        )
    elif _text(description, f"{path}.description", "description", DESCRIPTION_MAX, problems):
        out["description"] = description
    exceptions = _exceptions(raw.get("exceptions"), f"{path}.exceptions", problems)
    if exceptions is not None:
        out["exceptions"] = exceptions
    instructions = raw.get("argumentInstructions")
    if instructions is not None:
        checked = _argument_instructions(instructions, f"{path}.argumentInstructions", problems)
        if checked is not None:
            out["argumentInstructions"] = checked
    model = raw.get("preferredModel")
    if model is not None and _model_name(model, f"{path}.preferredModel", problems):
        out["preferredModel"] = model
    return out


def _text(value: Any, path: str, name: str, maximum: int, problems: ProblemSink) -> bool:
    """Whether ``value`` is a non-blank string of at most ``maximum`` characters (else a problem)."""
    if not isinstance(value, str) or not value.strip():
        problems.add(path, f"{name} must be a non-empty string")
        return False
    if len(value) > maximum:
        problems.add(path, f"{name} may be at most {maximum:,} characters")
        return False
    if _CONTROL_CHARACTERS.search(value):
        problems.add(path, f"{name} must not contain control characters")
        return False
    return True


def _same_text(value: str) -> str:
    # Two exceptions that differ only in case or spacing read alike to a model.
    return " ".join(value.split()).casefold()


def _exceptions(raw: Any, path: str, problems: ProblemSink) -> list[str] | None:
    if raw is None:
        problems.add(
            path, "exceptions is required: the cases in which a call the constraints refuse is allowed"
        )
        return None
    if not isinstance(raw, list):
        problems.add(path, "exceptions must be a list of strings")
        return None
    if not raw:
        problems.add(path, "exceptions must list at least one exception (with none, nothing can be allowed)")
        return None
    if len(raw) > EXCEPTIONS_MAX:
        problems.add(path, f"exceptions may list at most {EXCEPTIONS_MAX}")
        return None
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        here = f"{path}[{index}]"
        if not _text(item, here, "an exception", EXCEPTION_MAX, problems):
            continue
        first = seen.setdefault(_same_text(item), index)
        if first != index:
            problems.add(here, f"repeats exceptions[{first}]")
    return list(raw)


def _argument_instructions(raw: Any, path: str, problems: ProblemSink) -> list[dict[str, str]] | None:
    if not isinstance(raw, list):
        problems.add(path, "argumentInstructions must be a list of {argumentName, instruction} objects")
        return None
    if len(raw) > ARGUMENT_INSTRUCTIONS_MAX:
        problems.add(path, f"argumentInstructions may list at most {ARGUMENT_INSTRUCTIONS_MAX}")
        return None
    out: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        here = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            problems.add(here, "an argument instruction must be an object with argumentName and instruction")
            continue
        for key in item:
            if key not in ARGUMENT_INSTRUCTION_KEYS:
                problems.add(f"{here}.{key}", f"unknown key {key!r}; expected argumentName and instruction")
        name: Any = item.get("argumentName")
        instruction: Any = item.get("instruction")
        name_ok = _text(name, f"{here}.argumentName", "argumentName", ARGUMENT_NAME_MAX, problems)
        instruction_ok = _text(instruction, f"{here}.instruction", "instruction", INSTRUCTION_MAX, problems)
        if name_ok:
            first = seen.setdefault(name, index)
            if first != index:
                problems.add(f"{here}.argumentName", f"{name!r} already has an instruction at [{first}]")
        if name_ok and instruction_ok:
            out.append({"argumentName": name, "instruction": instruction})
    return out


def _model_name(value: Any, path: str, problems: ProblemSink) -> bool:
    if not isinstance(value, str) or not value:
        problems.add(path, "preferredModel must be a non-empty string (or null for the server's model)")
        return False
    if len(value) > MODEL_NAME_MAX:
        problems.add(path, f"preferredModel may be at most {MODEL_NAME_MAX} characters")
        return False
    if not MODEL_NAME.fullmatch(value):
        problems.add(
            path,
            "preferredModel must be a model name such as llama3.1:8b or gpt-4o-mini "
            "(letters, digits and . _ : / @ + -, starting with a letter or digit)",
        )
        return False
    return True
