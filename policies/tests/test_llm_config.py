"""The llmConfig of a mode "llm" policy is checked when written: every problem, each with its path."""

from __future__ import annotations

from typing import Any

import pytest

from policies.engine.llm_config import normalize_llm_config


class Collected:
    """Any object with ``add(path, message)`` collects the problems."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        self.items[path] = message


def check(raw: Any) -> tuple[dict[str, Any] | None, dict[str, str]]:
    problems = Collected()
    stored = normalize_llm_config(raw, "llmConfig", problems)
    return stored, problems.items


VALID = {
    "description": "Refunds a customer's order.",
    "exceptions": ["the customer is flagged VIP", "the order was lost in transit"],
}


def test_normalize__full_valid_body__stored_as_sent_with_no_problem():
    # Given a body with every field set
    body = {
        **VALID,
        "argumentInstructions": [{"argumentName": "amount", "instruction": "in euro cents"}],
        "preferredModel": "meta-llama/Llama-3.1-8B-Instruct",
    }
    # When it is checked
    stored, problems = check(body)
    # Then nothing is wrong and the stored form is the body, camelCase keys kept
    assert problems == {}
    assert stored == body


def test_normalize__optional_keys_null_or_absent__left_out():
    # Given the optional keys sent as null (as the SDK's models send unset fields)
    stored, problems = check({**VALID, "argumentInstructions": None, "preferredModel": None})
    # Then they are not stored at all
    assert problems == {}
    assert stored == VALID


def test_normalize__null__none_and_no_problem():
    # Given no llmConfig, When checked, Then there is nothing to store (the mode decides if it is needed)
    assert check(None) == (None, {})


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ("refund", "llmConfig", "must be an object"),
        ({"exceptions": ["a"]}, "llmConfig.description", "required"),
        ({**VALID, "description": ""}, "llmConfig.description", "non-empty"),
        ({**VALID, "description": "   "}, "llmConfig.description", "non-empty"),
        ({**VALID, "description": 7}, "llmConfig.description", "non-empty string"),
        ({**VALID, "description": "x" * 2001}, "llmConfig.description", "2,000"),
        ({**VALID, "description": "bell\x07"}, "llmConfig.description", "control characters"),
        ({"description": "d"}, "llmConfig.exceptions", "required"),
        ({**VALID, "exceptions": "VIP"}, "llmConfig.exceptions", "list of strings"),
        ({**VALID, "exceptions": []}, "llmConfig.exceptions", "at least one"),
        ({**VALID, "exceptions": [f"case {n}" for n in range(51)]}, "llmConfig.exceptions", "at most 50"),
        ({**VALID, "exceptions": ["a", "b", ""]}, "llmConfig.exceptions[2]", "non-empty"),
        ({**VALID, "exceptions": ["a", 5]}, "llmConfig.exceptions[1]", "non-empty string"),
        ({**VALID, "exceptions": ["a", "x" * 1001]}, "llmConfig.exceptions[1]", "1,000"),
        (
            {**VALID, "exceptions": ["VIP customer", "b", "vip  Customer"]},
            "llmConfig.exceptions[2]",
            "repeats exceptions[0]",
        ),
        ({**VALID, "argumentInstructions": {"amount": "cents"}}, "llmConfig.argumentInstructions", "list"),
        (
            {**VALID, "argumentInstructions": [{"argumentName": "a", "instruction": "i"}] * 101},
            "llmConfig.argumentInstructions",
            "at most 100",
        ),
        (
            {**VALID, "argumentInstructions": ["amount"]},
            "llmConfig.argumentInstructions[0]",
            "must be an object",
        ),
        (
            {**VALID, "argumentInstructions": [{"instruction": "in cents"}]},
            "llmConfig.argumentInstructions[0].argumentName",
            "non-empty string",
        ),
        (
            {**VALID, "argumentInstructions": [{"argumentName": "a" * 201, "instruction": "i"}]},
            "llmConfig.argumentInstructions[0].argumentName",
            "200",
        ),
        (
            {**VALID, "argumentInstructions": [{"argumentName": "amount", "instruction": ""}]},
            "llmConfig.argumentInstructions[0].instruction",
            "non-empty",
        ),
        (
            {**VALID, "argumentInstructions": [{"argumentName": "amount", "instruction": "i" * 1001}]},
            "llmConfig.argumentInstructions[0].instruction",
            "1,000",
        ),
        (
            {**VALID, "argumentInstructions": [{"argumentName": "amount", "instruction": "i", "weight": 2}]},
            "llmConfig.argumentInstructions[0].weight",
            "unknown key",
        ),
        (
            {
                **VALID,
                "argumentInstructions": [
                    {"argumentName": "amount", "instruction": "cents"},
                    {"argumentName": "amount", "instruction": "euros"},
                ],
            },
            "llmConfig.argumentInstructions[1].argumentName",
            "already has an instruction at [0]",
        ),
        ({**VALID, "preferredModel": ""}, "llmConfig.preferredModel", "non-empty"),
        ({**VALID, "preferredModel": 4}, "llmConfig.preferredModel", "non-empty string"),
        ({**VALID, "preferredModel": "m" * 201}, "llmConfig.preferredModel", "200"),
        ({**VALID, "preferredModel": "gpt 4"}, "llmConfig.preferredModel", "model name"),
        ({**VALID, "preferredModel": "-rf"}, "llmConfig.preferredModel", "model name"),
        ({**VALID, "preferredModel": "llama\n3"}, "llmConfig.preferredModel", "model name"),
        ({**VALID, "temperature": 0.7}, "llmConfig.temperature", "unknown llmConfig key"),
    ],
)
def test_normalize__one_bad_field__refused_naming_its_path(body, path, words):
    # Given a body with one thing wrong
    # When it is checked
    _, problems = check(body)
    # Then exactly that path is named, with a message that says what is wrong
    assert list(problems) == [path]
    assert words in problems[path]


def test_normalize__several_bad_fields__every_problem_reported():
    # Given a body with a problem in each field
    body = {
        "description": "",
        "exceptions": ["ok", ""],
        "argumentInstructions": [{"argumentName": "", "instruction": ""}],
        "preferredModel": "no spaces please",
        "extra": True,
    }
    # When it is checked
    _, problems = check(body)
    # Then all of them are reported at once, not only the first
    assert set(problems) == {
        "llmConfig.description",
        "llmConfig.exceptions[1]",
        "llmConfig.argumentInstructions[0].argumentName",
        "llmConfig.argumentInstructions[0].instruction",
        "llmConfig.preferredModel",
        "llmConfig.extra",
    }


@pytest.mark.parametrize("model", ["llama3.1", "llama3.1:8b", "gpt-4o-mini", "org/model@rev", "qwen2.5+q4"])
def test_normalize__common_model_names__accepted(model):
    # Given model names as OpenAI-compatible servers spell them, When checked, Then accepted
    stored, problems = check({**VALID, "preferredModel": model})
    assert problems == {}
    assert stored is not None and stored["preferredModel"] == model


def test_normalize__multi_line_exception__accepted_as_written():
    # Given an exception the author wrote over two lines (the prompt quotes each one, so a line
    # break cannot start a second item)
    exceptions = ["the customer is VIP\nand the order is under 500 EUR"]
    # When checked, Then it is kept as written
    stored, problems = check({**VALID, "exceptions": exceptions})
    assert problems == {}
    assert stored is not None and stored["exceptions"] == exceptions
