"""A failure caused by this machine (no network inside the sandbox, missing NLTK data) is an
``error`` verdict ("cannot grade here"), never ``incorrect``: it says nothing about the code."""

from __future__ import annotations

import json

import pytest

import verifiers
from verifiers import Status
from verifiers.code import _environment_failure

PROMPT = "def task_func(url):\n    pass\n"


def _reference(test: str) -> str:
    return json.dumps(
        {
            "kind": "bigcodebench",
            "task_id": "local/1",
            "prompt": PROMPT,
            "entry_point": "task_func",
            "test": test,
            "libs": ["urllib"],
        }
    )


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        (
            {
                "error": {
                    "message": "<urlopen error [Errno -3] Temporary failure in name resolution>"
                }
            },
            "network access",
        ),
        (
            {"trace": "AssertionError: 'ok' not found in \"Error: NameResolutionError(...)\""},
            "network access",
        ),
        (
            {
                "test": "test_a",
                "trace": "LookupError:\n  Resource \x1b[93mpunkt\x1b[0m not found.\n"
                "  Please use the NLTK Downloader to obtain the resource:",
            },
            "'punkt' missing (first: test_a)",
        ),
        ({"trace": "AssertionError: 3 != 4"}, None),
        ({"error": {"message": "ZeroDivisionError: division by zero"}}, None),
    ],
)
def test_environment_failures_are_recognised(out: dict, expected: str | None) -> None:
    why = _environment_failure(out)
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


def test_network_failure_in_the_sandbox_is_an_error_not_incorrect() -> None:
    test = (
        "import unittest\n"
        "class TestCases(unittest.TestCase):\n"
        "    def test_fetch(self):\n"
        "        self.assertEqual(task_func('http://example.invalid.brite-test/'), 200)\n"
    )
    fetch = (
        "import urllib.request\n"
        "def task_func(url):\n"
        "    return urllib.request.urlopen(url, timeout=5).status\n"
    )
    wrong = "def task_func(url):\n    return 404\n"
    verifier = verifiers.get("code")
    blocked, failed = verifier.verify_many([fetch, wrong], [_reference(test)] * 2)
    assert blocked.status is Status.ERROR, blocked
    assert "cannot grade here" in blocked.reason and "network" in blocked.reason
    assert failed.status is Status.INCORRECT, failed
