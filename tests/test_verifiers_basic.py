"""The in-process verifiers: exact, gsm8k, choice. Configs, registry, verdict contract."""

from __future__ import annotations

import json

import pytest

import verifiers
from verifiers import Status, VerifierConfigError
from verifiers.choice import ChoiceConfig, ChoiceVerifier
from verifiers.exact import ExactConfig, ExactMatchVerifier
from verifiers.numeric import GSM8KConfig, GSM8KVerifier, numbers_equal

C, I, U, E = Status.CORRECT, Status.INCORRECT, Status.UNPARSABLE, Status.ERROR  # noqa: E741


def test_registry_builds_these_classes() -> None:
    assert isinstance(verifiers.get("exact"), ExactMatchVerifier)
    assert isinstance(verifiers.get("gsm8k", strict=True), GSM8KVerifier)
    assert isinstance(verifiers.get("choice"), ChoiceVerifier)
    assert verifiers.get("gsm8k", rel_tol=0.0).config.rel_tol == 0.0


@pytest.mark.parametrize(
    ("cls", "kwargs", "needle"),
    [
        (GSM8KConfig, {"rel_tol": -1.0}, "-1.0"),
        (GSM8KConfig, {"rel_tol": 2}, "2"),
        (GSM8KConfig, {"strict": "yes"}, "'yes'"),
        (ExactConfig, {"case_sensitive": 1}, "1"),
        (ChoiceConfig, {"strict": None}, "None"),
    ],
)
def test_config_rejects_bad_values_and_shows_them(
    cls: type, kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        cls(**kwargs)


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(VerifierConfigError, match="bogus"):
        verifiers.get("gsm8k", bogus=1)
    with pytest.raises(VerifierConfigError):
        GSM8KVerifier(config=GSM8KConfig(), strict=True)


def test_configs_are_frozen() -> None:
    cfg = GSM8KConfig()
    with pytest.raises(AttributeError):
        cfg.strict = True  # type: ignore[misc]


# --------------------------------------------------------------------------- gsm8k

GSM8K_CASES = [
    # (completion, reference, status)
    ("Janet makes 9 * 2 = 18 dollars.\n#### 18", "18", C),
    ("#### 18", "18", C),
    ("The answer is $18.", "18", C),
    ("The answer is 18.00", "18", C),
    ("The answer is 1,234 apples", "1234", C),
    ("So she pays \\boxed{\\$1{,}234}", "1234", C),
    ("\\boxed{-5}", "-5", C),
    ("The answer is -5 degrees", "-5", C),
    ("The answer is 0.5", "0.5", C),
    ("\\boxed{\\frac{1}{2}}", "0.5", C),
    ("She ends with 7 marbles", "7", C),
    ("<think>maybe 3</think> The answer is 4", "4", C),
    ("#### 18", "19", I),
    ("The answer is 18", "180", I),
    ("The answer is 180", "18", I),
    ("The answer is 3 or 4", "3", I),
    ("The answer is 3 or 4", "4", I),
    ("\\boxed{3} and also \\boxed{4}", "4", I),
    ("The answer is 17.99", "18", I),
    ("no number at all", "18", U),
    ("", "18", U),
    ("#### 18", "not a number", E),
    # "#### N": spacing, thousands commas, $, .00, units, unicode minus, leading zeros
    ("Step 1: 5 + 3 = 8\n#### 8", "8", C),
    ("####8", "8", C),
    ("#### 1,000", "1000", C),
    ("#### $1,000", "1000", C),
    ("#### 1000.00", "1000", C),
    ("#### 2.50", "2.5", C),
    ("#### -12", "-12", C),
    ("#### −12", "-12", C),
    ("#### 12 dollars", "12", C),
    ("#### 0.75", "0.75", C),
    ("#### 3/4", "0.75", C),
    ("#### 07", "7", C),
    # "The answer is N" / "Answer: N"
    ("The answer is $1,250.50.", "1250.5", C),
    ("The answer is 1,000,000", "1000000", C),
    ("The answer is \\$ 3,000.", "3000", C),
    ("The answer is 45 minutes.", "45", C),
    ("The final answer is 20%", "20", C),
    ("The answer is 5.", "5.0", C),
    ("**Answer:** 64", "64", C),
    ("Answer: 64 cookies", "64", C),
    # \boxed{N}
    ("She needs \\boxed{12} more cups.", "12", C),
    ("\\boxed{\\$42.00}", "42", C),
    ("\\boxed{42 \\text{ apples}}", "42", C),
    ("\\boxed{-3}", "-3", C),
    ("\\boxed{1{,}500}", "1500", C),
    # last number (flexible mode): $, negatives
    ("So the total cost is $45.", "45", C),
    ("The temperature dropped to -4 degrees.", "-4", C),
    # different numbers, signs, scales; a decimal is not rounded to the integer
    ("#### 8", "80", I),
    ("#### 1,000", "100", I),
    ("#### 1.000", "1000", I),
    ("#### -12", "12", I),
    ("#### 12", "-12", I),
    ("The answer is $45.50", "45", I),
    ("The answer is 0.5", "5", I),
    ("#### 1/2", "2", I),
    ("The answer is 100", "1000", I),
    ("The answer is 1000", "100", I),
    ("The answer is 12.01", "12", I),
    ("She has 3 left, then 7 more arrive", "3", I),
    # hedges, words for numbers, empty answers
    ("\\boxed{12} but maybe \\boxed{13}", "12", I),
    ("The answer is 12 or 13 apples", "12", I),
    ("#### 12 or 13", "12", I),
    ("#### eighteen", "18", I),
    ("#### ", "18", I),
    ("\\boxed{}", "18", I),
    ("It is 18 dollars... The answer is", "18", I),
    ("   ", "18", U),
    ("I cannot solve this.", "18", U),
]


@pytest.mark.parametrize(("completion", "reference", "status"), GSM8K_CASES)
def test_gsm8k(completion: str, reference: str, status: Status) -> None:
    v = GSM8KVerifier()
    verdict = v.verify(completion, reference)
    assert verdict.status is status, verdict
    assert verdict.score == (1.0 if status is C else 0.0)
    assert verdict.reason


def test_gsm8k_strict_needs_an_explicit_answer() -> None:
    assert GSM8KVerifier(strict=True).verify("She ends with 7", "7").status is U
    assert GSM8KVerifier(strict=False).verify("She ends with 7", "7").status is C


def test_gsm8k_tolerance_only_for_decimals() -> None:
    assert numbers_equal("1000000", "1000000")
    assert not numbers_equal("1000001", "1000000", rel_tol=0.01)  # integers: exact
    assert numbers_equal("0.3333333", "1/3", rel_tol=1e-6)
    assert not numbers_equal("0.3333333", "1/3", rel_tol=0.0)
    assert not numbers_equal("1/0", "1")


def test_never_raises_on_bad_types() -> None:
    for v in (GSM8KVerifier(), ExactMatchVerifier(), ChoiceVerifier()):
        verdict = v.verify(None, "1")  # type: ignore[arg-type]
        assert verdict.status is E and "str" in verdict.reason


# --------------------------------------------------------------------------- exact

EXACT_CASES = [
    ("\\boxed{-42}", "-42", C),
    ("The answer is 1,234.", "1234", C),
    ("Answer: $1234$", "1234", C),
    ("The final answer is 1 234", "1234", C),
    ("so it is 57", "57", C),
    ("\\boxed{−42}", "-42", C),
    ("\\boxed{42}", "-42", I),
    ("\\boxed{1234.0}", "1234", I),
    ("\\boxed{12}", "123", I),
    ("\\boxed{123}", "12", I),
    ("\\boxed{3 or 4}", "3", I),
    ("\\boxed{3}\\boxed{4}", "4", I),
    ("\\boxed{}", "4", I),
    ("no digits", "4", U),
    ("What is 17 + 25?", "42", I),  # echo of the question: last number is 25
]


@pytest.mark.parametrize(("completion", "reference", "status"), EXACT_CASES)
def test_exact(completion: str, reference: str, status: Status) -> None:
    verdict = ExactMatchVerifier().verify(completion, reference)
    assert verdict.status is status, verdict


def test_exact_strict_and_case() -> None:
    assert ExactMatchVerifier(strict=True).verify("so it is 57", "57").status is U
    assert ExactMatchVerifier().verify("Answer: Paris", "paris").status is C
    assert ExactMatchVerifier(case_sensitive=True).verify("Answer: Paris", "paris").status is I


# --------------------------------------------------------------------------- choice

OPTIONS = {"A": "12 kg", "B": "42 kg", "C": "7 m/s", "D": "None of the above"}
JREF = json.dumps({"answer": "B", "options": OPTIONS})

CHOICE_CASES = [
    ("(B)", "B", C),
    ("B) is right", "B", C),
    ("Answer: B", "B", C),
    ("\\boxed{B}", "B", C),
    ("the answer is B", "B", C),
    ("The answer is (B).", "B", C),
    ("The correct answer is **B**", "B", C),
    ("Answer: B", JREF, C),
    ("The answer is 42 kg.", JREF, C),
    ("42 kg", JREF, C),
    ("\\boxed{42 kg}", JREF, C),
    ("Answer: A", "B", I),
    ("The answer is 12 kg.", JREF, I),
    ("The answer is A or B", "B", I),
    ("\\boxed{A} ... \\boxed{B}", "B", I),
    ("42", JREF, U),  # a substring of an option is not the option
    ("", "B", U),
    ("I am not sure.", "B", U),
    ("Answer: B", "{broken json", E),
    ("Answer: B", "BB", E),
    # letter forms
    ("B)", "B", C),
    ("B", "B", C),
    ("B.", "B", C),
    ("Answer: (B)", "B", C),
    ("**Answer: B**", "B", C),
    ("The answer is B.", "B", C),
    ("the answer is (B)", "B", C),
    ("The correct option is B", "B", C),
    ("Final answer: B", "B", C),
    ("\\boxed{(B)}", "B", C),
    ("\\boxed{\\text{B}}", "B", C),
    ("\\boxed{\\textbf{(B)}}", "B", C),
    ("$\\boxed{B}$", "B", C),
    ("I first thought (A), but the answer is (B).", "B", C),
    ("<think>maybe A</think>Answer: B", "B", C),
    # option text (the reference lists the options)
    ("\\boxed{42 kg}", JREF, C),
    ("The answer is B) 42 kg", JREF, C),
    ("B) 42 kg", JREF, C),
    ("Answer: $42$ kg", JREF, C),
    ("The answer is: 42 kg.", JREF, C),
    ("The answer is none of the above", JREF, I),
    # wrong letters and hedges
    ("(A)", "B", I),
    ("\\boxed{C}", "B", I),
    ("The answer is (D)", "B", I),
    ("Either (A) or (B)", "B", I),
    ("\\boxed{A}\\boxed{B}", "B", I),
    ("The answer is A and/or B", "B", I),
    ("Answer: B or C", "B", I),
    ("Answer: C", JREF, I),
    # nothing usable: lowercase letters are words, letters outside the options are ignored
    ("(b)", "B", U),
    ("The answer is unclear", "B", U),
    ("kg", JREF, U),
    ("Answer: E", JREF, U),
]


@pytest.mark.parametrize(("completion", "reference", "status"), CHOICE_CASES)
def test_choice(completion: str, reference: str, status: Status) -> None:
    verdict = ChoiceVerifier().verify(completion, reference)
    assert verdict.status is status, verdict


def test_choice_strict_ignores_loose_letters() -> None:
    assert ChoiceVerifier(strict=True).verify("I pick (B)", "B").status is U
    assert ChoiceVerifier().verify("I pick (B)", "B").status is C


def test_verify_many_keeps_order_and_checks_lengths() -> None:
    v = GSM8KVerifier()
    out = v.verify_many(["#### 1", "#### 2", "#### 3"], ["1", "3", "3"])
    assert [x.status for x in out] == [C, I, C]
    with pytest.raises(ValueError, match="2 references"):
        v.verify_many(["a"], ["1", "2"])


def test_verdict_to_dict_round_trip() -> None:
    d = GSM8KVerifier().verify("#### 5", "5").to_dict()
    assert d["status"] == "correct" and d["extracted"] == "5" and d["reason"] == "hash; equal"


def test_gsm8k_non_numeric_answers_are_wrong_not_unparsable() -> None:
    v = GSM8KVerifier()
    boxed_text = v.verify("the final answer is \\boxed{\\text{none}}.", "18")
    assert boxed_text.status is I and boxed_text.extracted == "\\text{none}"
    assert v.verify("#### eighteen", "18").status is I
    assert v.verify("\\boxed{18} or \\boxed{\\text{none}}", "18").status is I
