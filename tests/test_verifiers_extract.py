"""Answer extraction (verifiers.extract): pure functions, table-driven."""

from __future__ import annotations

import json
import time

import pytest

from verifiers.extract import (
    extract_choice,
    extract_gsm8k,
    extract_math,
    find_boxed,
    is_echo,
    is_hedge,
    normalize_exact,
    parse_choice_reference,
    parse_number,
    restated_spans,
    strip_restated,
    strip_think,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{5}", ["5"]),
        ("a \\boxed{\\frac{1}{2}} b", ["\\frac{1}{2}"]),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", ["\\frac{\\sqrt{3}}{2}"]),
        ("\\boxed{{{1}}}", ["{{1}}"]),
        ("\\fbox{7}", ["7"]),
        ("\\boxed 2.", ["2"]),
        ("\\boxed{1} then \\boxed{2}", ["1", "2"]),
        ("\\boxed{\\{1,2\\}}", ["\\{1,2\\}"]),
        ("\\boxed{unclosed", []),
        ("\\boxed{unclosed \\boxed{3}", ["3"]),
        ("no box", []),
        ("\\boxed{}", [""]),
        ("\\boxed{\\text{(C)}}", ["\\text{(C)}"]),
    ],
)
def test_find_boxed(text: str, expected: list[str]) -> None:
    assert find_boxed(text) == expected


def test_find_boxed_is_linear_on_deep_nesting() -> None:
    deep = "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}"
    t0 = time.perf_counter()
    assert find_boxed(deep) == ["{" * 5000 + "1" + "}" * 5000]
    unbalanced = "\\boxed{" * 8000
    assert find_boxed(unbalanced) == []
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>\\boxed{1}</think>\\boxed{2}", "\\boxed{2}"),
        ("  <think>x</think> answer", " answer"),
        ("reasoning</think>final", "final"),
        ("<think>never closed \\boxed{3}", "<think>never closed \\boxed{3}"),
        ("plain", "plain"),
    ],
)
def test_strip_think(text: str, expected: str) -> None:
    assert strip_think(text) == expected


@pytest.mark.parametrize(
    ("text", "strict", "answer", "rule"),
    [
        ("so \\boxed{42}.", False, "42", "boxed"),
        ("The final answer is $\\frac{1}{2}$.", False, "\\frac{1}{2}", "answer-is"),
        ("The answer is 7. Done", False, "7", "answer-is"),
        ("Answer: x=3", False, "x=3", "answer-is"),
        ("**Final Answer:** 12", False, "12", "answer-is"),
        ("the final answer is \\boxed{9}.", False, "9", "boxed"),
        ("We get 3 apples and then 5 pears", False, "5", "last-number"),
        ("We get 3 apples and then 5 pears", True, None, None),
        ("<think>\\boxed{1}</think> The answer is 2", False, "2", "answer-is"),
        ("nothing here", False, None, None),
        # an answer phrase with nothing after it is an empty answer, not a cue to guess
        ("x = 3, so the final answer is", False, "", "answer-is"),
        ("x = 3. Answer: $ $", False, "", "answer-is"),
        ("Answer:\n\n$x = 3$", False, "x = 3", "answer-is"),
    ],
)
def test_extract_math(text: str, strict: bool, answer: str | None, rule: str | None) -> None:
    ext = extract_math(text, strict=strict)
    if answer is None:
        assert ext is None
    else:
        assert ext is not None and (ext.answer, ext.rule) == (answer, rule)


def test_extract_math_reports_distinct_boxes_as_candidates() -> None:
    ext = extract_math("\\boxed{3} or maybe \\boxed{4}")
    assert ext is not None and ext.hedged and ext.candidates == ("3", "4")
    same = extract_math("\\boxed{3} so again \\boxed{ 3 }")
    assert same is not None and not same.hedged


@pytest.mark.parametrize(
    ("text", "strict", "answer", "rule", "hedged"),
    [
        ("blah\n#### 18", False, "18", "hash", False),
        ("#### $1,234.00", False, "1234", "hash", False),
        ("#### -5", False, "-5", "hash", False),
        ("The answer is 18 dollars.", False, "18", "answer-is", False),
        ("The answer is $18.50", False, "18.5", "answer-is", False),
        ("\\boxed{1{,}000}", False, "1000", "boxed", False),
        ("\\boxed{\\$12}", False, "12", "boxed", False),
        ("\\boxed{\\frac{3}{4}}", False, "3/4", "boxed", False),
        ("She has 3 then 7 left", False, "7", "last-number", False),
        ("She has 3 then 7 left", True, None, None, False),
        ("The answer is 3 or 4", False, "3", "answer-is", True),
        ("\\boxed{3} \\boxed{4}", False, "3", "boxed", True),
        ("no numbers", False, None, None, False),
        ("18 eggs in all: \\boxed{}", False, "", "boxed", False),
        ("18 eggs in all. The answer is", False, "", "answer-is", False),
    ],
)
def test_extract_gsm8k(
    text: str, strict: bool, answer: str | None, rule: str | None, hedged: bool
) -> None:
    ext = extract_gsm8k(text, strict=strict)
    if answer is None:
        assert ext is None
        return
    assert ext is not None
    assert ext.rule == rule
    assert ext.hedged == hedged
    if not hedged:
        assert ext.answer == answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,234", "1234"),
        ("-7 apples", "-7"),
        ("−7", "-7"),
        ("12.00", "12"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("007", "7"),
        ("3/4", "3/4"),
        ("\\dfrac{3}{4}", "3/4"),
        ("1{,}000", "1000"),
        ("none", None),
    ],
)
def test_parse_number(text: str, expected: str | None) -> None:
    assert parse_number(text) == expected


OPTS = {"A": "12 kg", "B": "42 kg", "C": "$\\pi$", "D": "None of these"}


@pytest.mark.parametrize(
    ("text", "options", "strict", "letter", "hedged"),
    [
        ("(B)", None, False, "B", False),
        ("B) because", None, False, "B", False),
        ("Answer: B", None, True, "B", False),
        ("\\boxed{B}", None, True, "B", False),
        ("\\boxed{\\text{(B)}}", None, True, "B", False),
        ("the answer is B.", None, True, "B", False),
        ("The correct answer is **(C)**", None, True, "C", False),
        ("The answer is 42 kg.", OPTS, True, "B", False),
        ("none of these", OPTS, True, "D", False),
        ("\\boxed{42 kg}", OPTS, True, "B", False),
        ("The answer is A or B", None, True, "A", True),
        ("\\boxed{A} \\boxed{C}", None, True, "C", True),
        ("(B)", None, True, None, False),
        ("the answer is a prime", None, False, None, False),
        ("Answer: E", OPTS, True, None, False),
        ("", None, False, None, False),
    ],
)
def test_extract_choice(
    text: str, options: dict[str, str] | None, strict: bool, letter: str | None, hedged: bool
) -> None:
    ext = extract_choice(text, options=options, strict=strict)
    if letter is None:
        assert ext is None
        return
    assert ext is not None and ext.answer == letter and ext.hedged == hedged


def test_parse_choice_reference() -> None:
    assert parse_choice_reference("B") == ("B", {})
    assert parse_choice_reference("(c)") == ("C", {})
    ref = json.dumps({"answer": "B", "options": OPTS})
    assert parse_choice_reference(ref) == ("B", OPTS)
    for bad in ["BB", "", "{not json", json.dumps({"answer": "E", "options": OPTS})]:
        with pytest.raises(ValueError):
            parse_choice_reference(bad)


@pytest.mark.parametrize(
    ("a", "b"),
    [("1,234", "1234"), ("$-42$.", "-42"), ("\\text{ 7 }", "7"), ("−3", "-3"), (" 5 ", "5")],
)
def test_normalize_exact(a: str, b: str) -> None:
    assert normalize_exact(a) == normalize_exact(b)


def test_is_hedge() -> None:
    assert is_hedge("3 or 4")
    assert is_hedge("3 \\text{ or } 4")
    assert not is_hedge("3 \\text{ or } 4", "1 \\text{ or } 2")
    assert not is_hedge("\\text{orange}")
    assert not is_hedge("\\frac{1}{2}")


# --------------------------------------------------------------------------- the question

Q = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and "
    "bakes muffins for her friends every day with four. How many eggs are left?"
)


@pytest.mark.parametrize(
    ("text", "restated"),
    [
        (Q, [Q]),
        (
            "We know: Janet's ducks lay 16 eggs per day. So 16 - 7 = 9.",
            ["Janet's ducks lay 16 eggs per day."],
        ),
        ("Janet's  ducks\n lay 16\teggs per day.", ["Janet's  ducks\n lay 16\teggs per day."]),
        ("16 - 3 - 4 = 9 eggs are left", []),  # working, not a restatement
        ("ducks lay 16 eggs", []),  # under five words
        ("Janet's geese lay 16 eggs each day.", []),  # three words verbatim
    ],
)
def test_restated_spans(text: str, restated: list[str]) -> None:
    assert [text[a:b] for a, b in restated_spans(text, Q)] == restated


def test_short_question_counts_only_whole() -> None:
    q = "What is 17 + 25?"
    assert restated_spans("What is 17 + 25? It is 42.", q) == [(0, 16)]
    assert restated_spans("17 + 25 = 42", q) == []


@pytest.mark.parametrize(
    ("text", "echo"),
    [
        (Q, True),
        ("Question: " + Q, True),
        (Q[: len(Q) // 2], True),  # a truncated echo
        (Q + " The answer is 9.", True),  # mostly echo; extraction still finds the 9
        (Q + " First she eats three, then bakes with four, so 16 - 3 - 4 = 9 are left.", False),
        ("9", False),
        ("", False),
    ],
)
def test_is_echo(text: str, echo: bool) -> None:
    assert is_echo(text, Q) is echo


def test_strip_restated_keeps_answers_after_and_boxes() -> None:
    assert strip_restated(Q + "\n#### 9", Q).strip() == "#### 9"
    assert strip_restated("no restatement here", Q) == "no restatement here"
    assert strip_restated(Q, None) == Q
    # a box quoting the question's wording stays whole
    boxed = "\\boxed{Janet's ducks lay 16 eggs per day.}"
    assert find_boxed(strip_restated(boxed, Q)) == ["Janet's ducks lay 16 eggs per day."]
    # a restatement ending in an answer phrase keeps the phrase
    q = "Earlier: x = 2, so the answer is $2$. Now find y if y = x + 1."
    assert extract_math("x = 2, so the answer is $3$", question=q).answer == "3"


@pytest.mark.parametrize(
    ("extract", "text", "without", "with_question"),
    [
        (extract_math, "What is 12 times 3?", "3", None),
        (extract_gsm8k, Q, "16", None),
        (extract_gsm8k, Q + "\n16 - 3 - 4 = 9", "9", "9"),
        (extract_math, Q + " \\boxed{9}", "9", "9"),
        (extract_math, "Restating: " + Q + " The answer is 9.", "9", "9"),
    ],
)
def test_extraction_skips_the_restated_question(
    extract: object, text: str, without: str | None, with_question: str | None
) -> None:
    q = "What is 12 times 3?" if text.startswith("What") else Q
    plain = extract(text)  # type: ignore[operator]
    aware = extract(text, question=q)  # type: ignore[operator]
    assert (plain.answer if plain else None) == without
    assert (aware.answer if aware else None) == with_question


def test_choice_extraction_skips_letters_in_the_restated_question() -> None:
    q = "Which option, (A) or (C), names the gas that plants release during photosynthesis?"
    text = "Which option, (A) or (C), names the gas that plants release during photosynthesis?"
    assert extract_choice(text) is not None
    assert extract_choice(text, question=q) is None
    assert extract_choice(text + " Answer: C", question=q).answer == "C"  # type: ignore[union-attr]
