"""Every benchmark reference, wrapped as a model would write it, grades correct; a different
answer grades incorrect; the human rationales grade correct (the environment checker relies
on this). Exceptions are printed by record id."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from verifiers import Status, Verifier
from verifiers.extract import find_boxed
from verifiers.math import MathVerifier
from verifiers.numeric import GSM8KVerifier

# Records whose official solution boxes nothing (``\boxed{}``): no reference exists.
KNOWN_EMPTY_REFERENCES = {"math/train/5341", "math/train/5343"}
WRAP = "Working through the problem step by step, the final answer is \\boxed{{{}}}."


def _records(data_dir: Path, name: str) -> Iterator[tuple[str, dict[str, object]]]:
    folder = data_dir / name
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        pytest.skip(f"no data for {name} in {folder}")
    for f in files:
        with f.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                yield f"{name}/{f.stem}/{i}", json.loads(line)


def reference(name: str, rec: dict[str, object]) -> str:
    if name == "gsm8k":
        return str(rec["answer"]).split("####")[-1].strip().replace(",", "")
    if name in ("math", "minerva_math"):
        boxes = find_boxed(str(rec["solution"]))
        return boxes[-1] if boxes else ""
    return str(rec["answer"])


def wrong_answers(ref: str) -> list[str]:
    """Answers that differ from ``ref``: its last integer moved by one (27 -> 28,
    52_8 -> 52_9, \\frac{1}{2^{98}} -> ...{2^{99}}) and, for non-numeric ones, a text answer."""
    out = []
    digits = list(re.finditer(r"\d+", ref))
    if digits:
        m = digits[-1]
        out.append(ref[: m.start()] + str(int(m.group()) + 1) + ref[m.end() :])
    if "none" not in ref:
        out.append("\\text{none}")
    return out


def _check(
    v: Verifier, name: str, data_dir: Path, rationale_field: str | None
) -> tuple[int, list[str], list[str], list[str]]:
    ids, refs, rationales = [], [], []
    for rid, rec in _records(data_dir, name):
        ref = reference(name, rec)
        if rid in KNOWN_EMPTY_REFERENCES:
            assert not ref.strip()
            continue
        ids.append(rid)
        refs.append(ref)
        if rationale_field:
            rationales.append(str(rec[rationale_field]))
    right = v.verify_many([WRAP.format(r) for r in refs], refs)
    bad_right = [
        f"{i} ref={r!r}: {x}" for i, r, x in zip(ids, refs, right, strict=True) if not x.correct
    ]
    wrong_pairs = [(i, r, w) for i, r in zip(ids, refs, strict=True) for w in wrong_answers(r)]
    wrong = v.verify_many(
        [WRAP.format(w) for _, _, w in wrong_pairs], [r for _, r, _ in wrong_pairs]
    )
    bad_wrong = [
        f"{i} ref={r!r} wrong={w!r}: {x}"
        for (i, r, w), x in zip(wrong_pairs, wrong, strict=True)
        if x.status is not Status.INCORRECT
    ]
    bad_rat: list[str] = []
    if rationale_field:
        rat = v.verify_many(rationales, refs)
        bad_rat = [
            f"{i} ref={r!r}: {x}" for i, r, x in zip(ids, refs, rat, strict=True) if not x.correct
        ]
    for label, bad in (("correct", bad_right), ("wrong", bad_wrong), ("rationale", bad_rat)):
        print(f"{name}: {label} exceptions {len(bad)}")
        for line in bad:
            print("   ", line)
    return len(ids), bad_right, bad_wrong, bad_rat


@pytest.fixture(scope="module")
def math_verifier() -> Iterator[MathVerifier]:
    v = MathVerifier()
    yield v
    v.close()


def test_gsm8k_references_and_rationales(data_dir: Path) -> None:
    n, bad_right, bad_wrong, bad_rat = _check(GSM8KVerifier(), "gsm8k", data_dir, "answer")
    assert n == 8792
    assert not bad_right and not bad_wrong and not bad_rat


@pytest.mark.parametrize(
    ("name", "rationale"),
    [
        ("math500", "solution"),
        ("minerva_math", "solution"),
        ("aime24", None),
        ("aime25", None),
        ("amc23", None),
    ],
)
def test_small_math_sets(
    math_verifier: MathVerifier, data_dir: Path, name: str, rationale: str | None
) -> None:
    _, bad_right, bad_wrong, bad_rat = _check(math_verifier, name, data_dir, rationale)
    assert not bad_right and not bad_wrong and not bad_rat


@pytest.mark.slow
def test_full_math(math_verifier: MathVerifier, data_dir: Path) -> None:
    n, bad_right, bad_wrong, bad_rat = _check(math_verifier, "math", data_dir, "solution")
    assert n == 12498
    assert not bad_right and not bad_wrong
    # Solutions that box several different values (an intermediate result, then the
    # answer) are hedges under the default-to-failing rule; nothing else may fail.
    assert all("hedged" in line for line in bad_rat), bad_rat
    assert len(bad_rat) <= 0.005 * n
