"""Benchmark tasks read their data correctly: counts, ids, references, metadata, ``path=``
overrides, errors for malformed records and missing data, and GPQA's option shuffling.

GPQA questions must never appear in logs (the dataset asks for this), so GPQA checks run in
helpers that return only ids, letters, hashes and booleans, and assertions touch only those:
a failing assertion never shows question or option text.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from brite_envs.data import Record
from brite_envs.errors import DataNotAvailableError, EnvConfigError, MalformedRecordError
from brite_envs.task import Task
from brite_envs.tasks import math_tasks
from brite_envs.tasks._answers import canonical_number, last_boxed, wrong_answer
from brite_envs.tasks.gpqa import LETTERS, ZIP_PASSWORD, GPQADiamond, option_order
from brite_envs.tasks.gsm8k import GSM8K
from brite_envs.tasks.math_tasks import AIME24, AIME25, AMC23, MATH, MATH500, Minerva

EXPECTED = [
    (GSM8K, "train", 7473),
    (GSM8K, "test", 1319),
    (MATH, "train", 7500),
    (MATH, "test", 5000),
    (MATH500, "test", 500),
    (Minerva, "test", 272),
    (AIME24, "test", 30),
    (AIME25, "test", 30),
    (AMC23, "test", 40),
    (GPQADiamond, "test", 198),
]

_cache: dict[tuple[type[Task], str], Task] = {}


def _task(cls: type[Task], split: str = "test") -> Task:
    """Each dataset is parsed once per test session."""
    key = (cls, split)
    if key not in _cache:
        _cache[key] = cls(split=split)  # type: ignore[call-arg]
    return _cache[key]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _summary(task: Task) -> dict[str, Any]:
    """Checks over every problem, reduced to counts and ids (safe to show for GPQA)."""
    problems = task.problems
    ids = [p.id for p in problems]
    return {
        "n": len(problems),
        "unique_ids": len(set(ids)),
        "empty_refs": [p.id for p in problems if not p.reference.strip()],
        "empty_questions": [p.id for p in problems if not p.question.strip()],
        "bad_meta": [
            p.id
            for i, p in enumerate(problems)
            if p.meta.source != task.name or p.meta.index != i or p.meta.split != task.split
        ],
        "wrong_equals_ref": [
            p.id for p in problems if last_boxed(task.wrong_completion(p)) in (None, p.reference)
        ],
        "reference_completion_mismatch": [
            p.id for p in problems if last_boxed(task.reference_completion(p)) != p.reference
        ],
    }


# -- loading from BRITE_DATA_DIR ----------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "split", "count"), EXPECTED, ids=[f"{c.__name__}-{s}" for c, s, _ in EXPECTED]
)
def test_loads_shared_data(data_dir: Path, cls: type[Task], split: str, count: int) -> None:
    task = _task(cls, split)
    location = task.data_location()
    assert location.startswith("local:") and location.startswith(f"local:{data_dir}")
    summary = _summary(task)
    assert summary == {
        "n": count,
        "unique_ids": count,
        "empty_refs": [],
        "empty_questions": [],
        "bad_meta": [],
        "wrong_equals_ref": [],
        "reference_completion_mismatch": [],
    }


def test_gsm8k_fields(data_dir: Path) -> None:
    task = _task(GSM8K, "test")
    first = task[0]
    assert first.id == "gsm8k/test/0"
    assert first.reference == "18"
    assert first.rationale is not None and first.rationale.rstrip().endswith("#### 18")
    # Thousands separators are removed and every GSM8K answer is an integer.
    assert all(re.fullmatch(r"-?\d+", p.reference) for p in task.problems)
    assert task.wrong_completion(first).endswith("\\boxed{28}.")


def test_math_fields(data_dir: Path) -> None:
    test = _task(MATH, "test")
    p = test[test.index_of("test/algebra/1.json")]
    assert p.reference == "2"
    assert p.meta.subject == "Algebra" and p.meta.level == "Level 3"
    assert p.rationale is not None and "\\boxed{2}" in p.rationale
    subjects = Counter(q.meta.subject for q in test.problems)
    assert len(subjects) == 7
    # The two official train records with an empty \boxed{} get their (documented) answer.
    train = _task(MATH, "train")
    for uid in ("train/number_theory/7115.json", "train/number_theory/7117.json"):
        assert train[train.index_of(uid)].reference == "0"


def test_math_prompts_show_question_and_reference(data_dir: Path) -> None:
    task = _task(MATH500)
    p = task[0]
    prompt = task.render_prompt(p)
    assert prompt.startswith(p.question) and prompt.endswith("within \\boxed{}.")
    assert f"The correct final answer is {p.reference}." in task.render_hinted_prompt(p)


def test_math500_matches_math_test_boxed_answers(data_dir: Path) -> None:
    """MATH-500's ``answer`` field equals the last boxed answer of the same MATH test record,
    which cross-checks the \\boxed{} extraction on 500 problems."""
    math = _task(MATH, "test")
    m500 = _task(MATH500)
    mismatched = [p.id for p in m500.problems if math[math.index_of(p.id)].reference != p.reference]
    assert mismatched == []
    assert {p.meta.level for p in m500.problems} == {f"Level {n}" for n in range(1, 6)}
    assert all(p.meta.subject for p in m500.problems)


def test_minerva_fields(data_dir: Path) -> None:
    task = _task(Minerva)
    assert [p.id for p in task.problems[:2]] == ["minerva/0", "minerva/1"]
    assert task[0].reference == "1.6"
    assert task[0].meta.subject == "Introduction to Astronomy (8.282J Spring 2006)"
    assert task.wrong_completion(task[0]).endswith("\\boxed{2.6}.")
    assert all(p.reference == p.reference.strip() for p in task.problems)


def test_competition_answers_are_plain_integers(data_dir: Path) -> None:
    for cls in (AIME24, AIME25, AMC23):
        task = _task(cls)
        bad = [p.id for p in task.problems if not re.fullmatch(r"-?(0|[1-9]\d*)", p.reference)]
        assert bad == [], cls.__name__
    amc = _task(AMC23)
    assert amc[0].reference == "27" and amc[0].id == "amc23/0"
    assert amc[0].meta.extra["url"].startswith("https://")
    aime24 = _task(AIME24)
    assert aime24[0].id == "aime24/60" and aime24[0].reference == "204"
    assert aime24[0].rationale
    assert "25" in [p.reference for p in aime24.problems]  # stored zero-padded as "025"
    assert _task(AIME25)[0].id == "aime25/0"


def test_pickle_round_trip(data_dir: Path) -> None:
    """Vector envs pickle tasks before use; the clone loads the same problems. (Pickling a
    task after loading fails in brite_envs.types: ProblemMeta.extra is a mappingproxy.)"""
    task = GPQADiamond(shuffle_seed=2)
    clone = pickle.loads(pickle.dumps(task))
    assert (clone.split, clone.shuffle_seed, clone.path) == ("test", 2, None)
    assert clone.data_location() == task.data_location()
    assert [p.reference for p in clone.problems] == [p.reference for p in task.problems]


# -- MATH subject and level filters ---------------------------------------------------------


@pytest.mark.parametrize(
    ("subjects", "levels", "count"),
    [
        (["Algebra"], None, 1187),
        (["ALGEBRA"], None, 1187),
        ("algebra", None, 1187),
        (["intermediate_algebra"], None, 903),
        (["Intermediate Algebra"], None, 903),
        (["counting & probability", "number-theory"], None, 474 + 540),
        (["Counting_and_Probability"], None, 474),
        (None, [5], 1324),
        (None, ["Level 5"], 1324),
        (None, [1, "level 1", "1"], 437),
        (None, 2, 894),
        (["geometry"], [1, 2], None),
    ],
)
def test_math_filters(data_dir: Path, subjects: Any, levels: Any, count: int | None) -> None:
    full = _task(MATH, "test")
    task = MATH(split="test", subjects=subjects, levels=levels)
    problems = task.problems
    if count is not None:
        assert len(problems) == count
    want_subjects = None if subjects is None else set(task.subjects or ())
    want_levels = None if levels is None else {f"Level {n}" for n in task.levels or ()}
    expected = [
        p
        for p in full.problems
        if (want_subjects is None or p.meta.subject in want_subjects)
        and (want_levels is None or p.meta.level in want_levels)
    ]
    # the same problems, in the same order, with the same ids and indices as the full split
    assert [p.id for p in problems] == [p.id for p in expected]
    assert list(problems) == expected
    assert problems


def test_math500_filters(data_dir: Path) -> None:
    full = _task(MATH500)
    algebra = MATH500(subjects=["algebra"])
    assert len(algebra) == 124
    assert {p.meta.subject for p in algebra.problems} == {"Algebra"}
    hard = MATH500(levels=[5])
    assert len(hard) == 134 and {p.meta.level for p in hard.problems} == {"Level 5"}
    both = MATH500(subjects=["Precalculus", "geometry"], levels=["Level 1", 2])
    assert [p.id for p in both.problems] == [
        p.id
        for p in full.problems
        if p.meta.subject in ("Precalculus", "Geometry") and p.meta.level in ("Level 1", "Level 2")
    ]
    assert both.subjects == ("Geometry", "Precalculus") and both.levels == (1, 2)


def test_math_filters_keep_index_ids_from_path(tmp_path: Path) -> None:
    """Records without ``unique_id`` get position ids; a filter must not renumber them."""
    rows = [
        {"problem": f"p{i}", "solution": f"$\\boxed{{{i}}}$", "type": t, "level": lv}
        for i, (t, lv) in enumerate(
            [
                ("Algebra", "Level 1"),
                ("Geometry", "Level 5"),
                ("Algebra", "Level 5"),
                ("Number Theory", "Level ?"),
            ]
        )
    ]
    file = _write_jsonl(tmp_path / "math.jsonl", rows)
    task = MATH(path=file, subjects=["algebra"], levels=[5])
    assert [(p.id, p.reference, p.meta.index) for p in task.problems] == [("math/test/2", "2", 2)]
    assert [p.id for p in MATH(path=file, levels=[5]).problems] == ["math/test/1", "math/test/2"]
    assert [p.id for p in MATH(path=file, subjects="number theory").problems] == ["math/test/3"]
    assert len(MATH(path=file)) == 4  # "Level ?" is only dropped by a level filter
    clone = pickle.loads(pickle.dumps(task))
    assert (clone.subjects, clone.levels) == (("Algebra",), (5,))
    assert "subjects=('Algebra',)" in repr(task) and "levels=(5,)" in repr(task)


@pytest.mark.parametrize(
    ("kwargs", "bad", "valid"),
    [
        ({"subjects": ["calculus"]}, "'calculus'", "'Intermediate Algebra' (intermediate_algebra)"),
        ({"subjects": ["algebra", "Topology"]}, "'Topology'", "'Counting & Probability'"),
        ({"subjects": []}, "subjects=[]", "'Precalculus'"),
        ({"subjects": 5}, "5", "'Algebra'"),
        ({"subjects": {"algebra": 1}}, "{'algebra': 1}", "'Geometry'"),
        ({"levels": [6]}, "6", "1, 2, 3, 4, 5"),
        ({"levels": [0, 1]}, "0", "1, 2, 3, 4, 5"),
        ({"levels": ["Level ?"]}, "'Level ?'", "'Level 1' ... 'Level 5'"),
        ({"levels": ["hard"]}, "'hard'", "1, 2, 3, 4, 5"),
        ({"levels": [True]}, "True", "1, 2, 3, 4, 5"),
        ({"levels": [2.5]}, "2.5", "1, 2, 3, 4, 5"),
        ({"levels": []}, "levels=[]", "1, 2, 3, 4, 5"),
    ],
)
def test_math_filters_reject_bad_values(kwargs: dict[str, Any], bad: str, valid: str) -> None:
    for cls in (MATH, MATH500):
        with pytest.raises(EnvConfigError) as info:
            cls(**kwargs)  # type: ignore[arg-type]
        message = str(info.value)
        assert bad in message and valid in message and cls.name in message


def test_math_filters_through_the_registry(data_dir: Path) -> None:
    from brite_envs.registry import make_task

    task = make_task("math500", subjects=["number_theory"], levels=[3])
    assert isinstance(task, MATH500) and task.levels == (3,)
    assert task.problems and all(
        p.meta.subject == "Number Theory" and p.meta.level == "Level 3" for p in task.problems
    )


# -- splits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "valid"),
    [
        (GSM8K, ["train", "test"]),
        (MATH, ["train", "test"]),
        (MATH500, ["test"]),
        (Minerva, ["test"]),
        (AIME24, ["test"]),
        (AIME25, ["test"]),
        (AMC23, ["test"]),
        (GPQADiamond, ["test"]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "-".join(v),
)
def test_invalid_split_names_valid_ones(cls: type[Task], valid: list[str]) -> None:
    with pytest.raises(EnvConfigError) as info:
        cls(split="validation")  # type: ignore[call-arg]
    message = str(info.value)
    assert "'validation'" in message and cls.name in message
    assert all(f"{s}" in message for s in valid)
    if valid == ["test"]:
        assert "train" not in message


# -- path= ------------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_gsm8k_from_path_file_and_folder(tmp_path: Path) -> None:
    rows = [
        {"question": "What is 1000 + 234?", "answer": "1000 + 234 = 1,234\n#### 1,234"},
        {"question": "What is 2 - 3?", "answer": "2 - 3 = -1\n#### -1"},
    ]
    file = _write_jsonl(tmp_path / "mine.jsonl", rows)
    task = GSM8K(path=file)
    assert task.data_location() == f"local:{file}"
    assert [p.reference for p in task.problems] == ["1234", "-1"]
    assert [p.id for p in task.problems] == ["gsm8k/test/0", "gsm8k/test/1"]
    assert task[0].rationale == rows[0]["answer"]
    assert last_boxed(task.wrong_completion(task[0])) == "2234"
    # A folder laid out like BRITE_DATA_DIR, or holding the split file directly.
    _write_jsonl(tmp_path / "root" / "gsm8k" / "train.jsonl", rows[:1])
    assert len(GSM8K(split="train", path=tmp_path / "root")) == 1
    _write_jsonl(tmp_path / "flat" / "train.jsonl", rows)
    assert len(GSM8K(split="train", path=tmp_path / "flat")) == 2


def test_math_from_path_extracts_last_balanced_box(tmp_path: Path) -> None:
    rows = [
        {
            "problem": "p0",
            "solution": "First $\\boxed{1}$, then $\\boxed{\\frac{\\sqrt{2}}{2}}$.",
            "level": "Level 2",
            "type": "Algebra",
        },
        {"problem": "p1", "solution": "So $\\fbox{\\{1, 2\\}}$.", "level": "Level 1", "type": "X"},
        {
            "problem": "p2",
            "solution": "Our answer is $\\boxed 2$.",
            "level": "Level 1",
            "type": "X",
        },
    ]
    task = MATH(path=_write_jsonl(tmp_path / "math.jsonl", rows))
    assert [p.id for p in task.problems] == ["math/test/0", "math/test/1", "math/test/2"]
    assert [p.reference for p in task.problems] == ["\\frac{\\sqrt{2}}{2}", "\\{1, 2\\}", "2"]
    assert task[0].meta.level == "Level 2" and task[0].meta.subject == "Algebra"
    assert [last_boxed(task.wrong_completion(p)) for p in task.problems] == [
        "\\frac{\\sqrt{2}}{2}+1",
        "\\text{none}",
        "3",
    ]


def test_other_math_tasks_from_path(tmp_path: Path) -> None:
    m500 = MATH500(
        path=_write_jsonl(
            tmp_path / "m500.jsonl",
            [
                {
                    "problem": "p",
                    "solution": "s $\\boxed{(0,1]}$",
                    "answer": "(0,1]",
                    "subject": "Algebra",
                    "level": 4,
                    "unique_id": "test/algebra/9.json",
                }
            ],
        )
    )
    assert m500[0].id == "test/algebra/9.json" and m500[0].meta.level == "Level 4"
    assert last_boxed(m500.wrong_completion(m500[0])) == "\\text{none}"
    amc = AMC23(
        path=_write_jsonl(
            tmp_path / "amc.jsonl",
            [
                {"id": 7, "problem": "p", "answer": 27.0},
                {"id": 8, "problem": "q", "answer": "-3.0"},
            ],
        )
    )
    assert [(p.id, p.reference) for p in amc.problems] == [("amc23/7", "27"), ("amc23/8", "-3")]
    aime = AIME24(
        path=_write_jsonl(tmp_path / "aime.jsonl", [{"question": "q", "answer": "025", "url": ""}])
    )
    assert (aime[0].id, aime[0].reference, dict(aime[0].meta.extra)) == ("aime24/0", "25", {})
    minerva = Minerva(
        path=_write_jsonl(
            tmp_path / "minerva.jsonl",
            [{"problem": "p", "solution": "$\\boxed{4.5e33}$ erg/s\n", "type": "T", "idx": 3}],
        )
    )
    assert (minerva[0].id, minerva[0].reference) == ("minerva/3", "4.5e33")
    assert last_boxed(minerva.wrong_completion(minerva[0])) == "5.5e33"


def test_missing_path_is_reported(tmp_path: Path) -> None:
    task = GSM8K(path=tmp_path / "nowhere")
    assert task.data_location() == "unavailable"
    with pytest.raises(DataNotAvailableError, match="nowhere"):
        task.problems  # noqa: B018


# -- malformed records --------------------------------------------------------------------

_GOOD_GSM8K = {"question": "q", "answer": "#### 1"}
_GOOD_MATH = {"problem": "p", "solution": "$\\boxed{1}$", "level": "Level 1", "type": "T"}


@pytest.mark.parametrize(
    ("cls", "bad", "field"),
    [
        (GSM8K, {"question": "q", "answer": "no final line"}, "answer"),
        (GSM8K, {"answer": "#### 3"}, "question"),
        (MATH, {"problem": "p", "solution": "no box here", "level": "1", "type": "T"}, "solution"),
        (MATH, {"problem": "p", "solution": "empty $\\boxed{}$", "type": "T"}, "solution"),
        (MATH, {"problem": "p", "solution": "$\\boxed{\\frac{1}{2}$", "type": "T"}, "solution"),
        (MATH500, {"problem": "p", "solution": "s", "unique_id": "u"}, "answer"),
        (Minerva, {"problem": "p", "solution": "s $\\boxed{1}$", "idx": "x"}, "idx"),
        (AMC23, {"id": 1, "problem": "p", "answer": [27]}, "answer"),
        (AIME25, {"answer": "5"}, "problem"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_malformed_record_names_file_line_field(
    tmp_path: Path, cls: type[Task], bad: dict[str, Any], field: str
) -> None:
    good = _GOOD_GSM8K if cls is GSM8K else {**_GOOD_MATH, "answer": "1", "unique_id": "g"}
    file = _write_jsonl(tmp_path / "data.jsonl", [good, bad])
    with pytest.raises(MalformedRecordError) as info:
        cls(path=file).problems  # type: ignore[call-arg]  # noqa: B018
    message = str(info.value)
    assert f"{file}:2:" in message and repr(field) in message
    assert (info.value.line, info.value.field) == (2, field)


def test_invalid_json_line_is_reported(tmp_path: Path) -> None:
    file = tmp_path / "data.jsonl"
    file.write_text(json.dumps(_GOOD_GSM8K) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(MalformedRecordError, match=re.escape(f"{file}:3:")):
        GSM8K(path=file).problems  # noqa: B018


# -- no data at all -----------------------------------------------------------------------

_HUB = [
    (GSM8K, "openai/gsm8k"),
    (MATH, "EleutherAI/hendrycks_math"),
    (MATH500, "HuggingFaceH4/MATH-500"),
    (AIME24, "HuggingFaceH4/aime_2024"),
    (AIME25, "math-ai/aime25"),
    (AMC23, "math-ai/amc23"),
    (GPQADiamond, "Idavidrein/gpqa"),
    (Minerva, None),
]


@pytest.mark.parametrize(("cls", "hub"), _HUB, ids=[c.__name__ for c, _ in _HUB])
def test_no_data_error_names_env_var_and_hub(
    monkeypatch: pytest.MonkeyPatch, cls: type[Task], hub: str | None
) -> None:
    monkeypatch.delenv("BRITE_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    task = cls()
    assert task.data_location() == (f"hub:{hub}" if hub else "unavailable")
    with pytest.raises(DataNotAvailableError) as info:
        task.problems  # noqa: B018
    message = str(info.value)
    assert "BRITE_DATA_DIR" in message
    assert (hub or "no hub dataset") in message


def test_math_hub_concatenates_subject_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub copy of MATH has a config per subject: the split is all of them, in order."""
    monkeypatch.delenv("BRITE_DATA_DIR", raising=False)
    asked: list[tuple[str, str | None, str]] = []

    def fake_load_records(source: Any, path: Any = None) -> list[Record]:
        hub = source.hub
        asked.append((hub.dataset, hub.config, hub.split))
        row = {"problem": "p", "solution": f"$\\boxed{{{hub.config}}}$", "type": hub.config}
        return [Record(f"hub:{hub.dataset}/{hub.config}", n, row) for n in (1, 2)]

    monkeypatch.setattr(math_tasks, "load_records", fake_load_records)
    task = MATH(split="train")
    assert asked == []  # nothing is fetched until the problems are used
    assert len(task) == 14
    assert asked == [("EleutherAI/hendrycks_math", s, "train") for s in math_tasks.MATH_SUBJECTS]
    assert [p.id for p in task.problems[:3]] == ["math/train/0", "math/train/1", "math/train/2"]
    assert [p.reference for p in task.problems[::2]] == list(math_tasks.MATH_SUBJECTS)


# -- GPQA ---------------------------------------------------------------------------------


def _gpqa_rows(data_dir: Path) -> list[dict[str, str]]:
    with zipfile.ZipFile(data_dir / "gpqa" / "gpqa_diamond.zip") as archive:
        raw = archive.read("gpqa_diamond.csv", pwd=ZIP_PASSWORD.encode())
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))


def _gpqa_check(task: GPQADiamond, rows: list[dict[str, str]]) -> dict[str, Any]:
    """Per-problem checks against the raw CSV, reduced to ids and letters (never text)."""
    correct = {r["Record ID"]: _sha(r["Correct Answer"].strip()) for r in rows}
    columns = ["Correct Answer"] + [f"Incorrect Answer {n}" for n in (1, 2, 3)]
    options = {r["Record ID"]: sorted(_sha(r[c].strip()) for c in columns) for r in rows}
    failures: list[str] = []
    letters: dict[str, str] = {}
    orders: dict[str, list[str]] = {}
    for p in task.problems:
        rid = p.meta.extra["record_id"]
        choices = p.choices or ()
        letter = p.reference
        letters[rid] = letter
        orders[rid] = [_sha(c) for c in choices]
        graded = json.loads(p.verifier_reference)
        shown = task.format_question(p)
        hint = task.format_reference(p)
        checks = {
            "id": p.id == f"gpqa/{rid}",
            "four": len(choices) == 4 and letter in LETTERS,
            "correct_text": bool(choices) and _sha(choices[LETTERS.index(letter)]) == correct[rid],
            "same_options": sorted(orders[rid]) == options[rid],
            "grading_ref": graded["answer"] == letter
            and list(graded["options"]) == list(LETTERS)
            and list(graded["options"].values()) == list(choices),
            "question_block": shown.startswith(p.question)
            and all(f"\n({L}) {c}" in shown for L, c in zip(LETTERS, choices, strict=False)),
            "hint": bool(choices) and hint == f"({letter}) {choices[LETTERS.index(letter)]}",
            "wrong": last_boxed(task.wrong_completion(p)) in set(LETTERS) - {letter},
            "right": last_boxed(task.reference_completion(p)) == letter,
            "subject": p.meta.subject in {"Physics", "Chemistry", "Biology"},
            "prompt": task.render_prompt(p).startswith(shown)
            and task.render_prompt(p).endswith("(A, B, C or D) within \\boxed{}."),
            "hinted": f"The correct answer is {hint}. " in task.render_hinted_prompt(p),
        }
        failures += [f"{p.id}:{name}" for name, ok in checks.items() if not ok]
    return {"failures": failures, "letters": letters, "orders": orders}


def test_gpqa_shuffle_is_deterministic_and_correct(data_dir: Path) -> None:
    rows = _gpqa_rows(data_dir)
    seed0 = _gpqa_check(_task(GPQADiamond), rows)
    again = _gpqa_check(GPQADiamond(shuffle_seed=0), rows)
    seed1 = _gpqa_check(GPQADiamond(shuffle_seed=1), rows)
    assert seed0["failures"] == [] and seed1["failures"] == []
    assert seed0["letters"] == again["letters"] and seed0["orders"] == again["orders"]
    changed = sum(seed0["letters"][k] != seed1["letters"][k] for k in seed0["letters"])
    assert changed > 100  # ~3/4 of 198 move for an independent shuffle
    counts = Counter(seed0["letters"].values())
    assert set(counts) == set(LETTERS) and min(counts.values()) > 30


def test_gpqa_from_csv_path(tmp_path: Path) -> None:
    header = ["Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2"]
    header += ["Incorrect Answer 3", "Explanation", "Subdomain", "High-level domain", "Record ID"]
    rows = [
        [
            "Synthetic question one?",
            "right",
            "w1",
            "w2",
            "w3",
            "because",
            "Optics",
            "Physics",
            "r1",
        ],
        ["Synthetic question two?", "yes", "no", "maybe", "never", "", "Genetics", "Biology", "r2"],
    ]
    file = tmp_path / "gpqa.csv"
    with file.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    task = GPQADiamond(path=file, shuffle_seed=3)
    p = task[0]
    assert p.id == "gpqa/r1"
    assert p.choices is not None and p.choices[LETTERS.index(p.reference)] == "right"
    assert [p.choices[k] for k in _inverse(option_order(3, "r1"))] == ["right", "w1", "w2", "w3"]
    assert p.rationale == "because" and task[1].rationale is None
    assert p.meta.subject == "Physics" and dict(p.meta.extra) == {
        "record_id": "r1",
        "subdomain": "Optics",
    }
    rows[1][1] = "  "
    with file.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    with pytest.raises(MalformedRecordError) as info:
        GPQADiamond(path=file).problems  # noqa: B018
    assert f"{file}:3:" in str(info.value) and "'Correct Answer'" in str(info.value)


def _inverse(order: list[int]) -> list[int]:
    inverse = [0] * len(order)
    for position, original in enumerate(order):
        inverse[original] = position
    return inverse


def test_option_order_is_a_stable_permutation() -> None:
    # Pinned values: the order must not change across machines or Python versions.
    assert sorted(option_order(5, "x")) == [0, 1, 2, 3]
    assert option_order(0, "recA") == [3, 0, 2, 1]
    assert option_order(1, "recA") == [0, 2, 3, 1]
    orders = {tuple(option_order(seed, "same-record")) for seed in range(50)}
    assert len(orders) > 10


def test_gpqa_rejects_non_int_seed() -> None:
    with pytest.raises(EnvConfigError, match="shuffle_seed"):
        GPQADiamond(shuffle_seed="0")  # type: ignore[arg-type]


# -- answer helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{5}$", "5"),
        ("$\\boxed{1}$ and later $\\boxed{ \\frac{1}{2} }$", "\\frac{1}{2}"),
        ("nested $\\boxed{\\left\\{ x \\right\\}}$", "\\left\\{ x \\right\\}"),
        ("escaped $\\boxed{\\{1,2\\}}$", "\\{1,2\\}"),
        ("fbox $\\fbox{7}$", "7"),
        ("bare $\\boxed 2$.", "2"),
        ("spaced \\boxed {3}", "3"),
        ("unbalanced \\boxed{1", None),
        ("no box \\boxedx{1}", None),
        ("nothing", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


def test_canonical_number() -> None:
    assert [canonical_number(x) for x in ["27.0", "025", "-1.0", "+4", " 7 ", "2.5", "x"]] == [
        "27",
        "25",
        "-1",
        "4",
        "7",
        "2.5",
        "x",
    ]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("18", "28"),
        ("3159", "4159"),
        ("-5", "-4"),
        ("0", "1"),
        ("1.6", "2.6"),
        ("0.006", "0.007"),
        ("4.5e33", "5.5e33"),
        ("1e-5", "2e-5"),
        ("\\frac{3}{4}", "\\frac{3}{4}+1"),
        ("2\\sqrt{3}", "2\\sqrt{3}+1"),
        ("x^2+7x+10", "x^2+7x+10+1"),
        ("\\infty", "\\text{none}"),
        ("(-\\infty, 3]", "\\text{none}"),
        ("(3, 4)", "\\text{none}"),
        ("\\{1,2\\}", "\\text{none}"),
        ("y = 2x+3", "\\text{none}"),
        ("30^\\circ", "\\text{none}"),
        ("10\\%", "\\text{none}"),
        ("\\text{Monday}", "\\text{none}"),
        ("\\frac \\pi4 + 2", "\\text{none}"),
        ("\\frac{7}{5} + \\frac{1}{5} i.", "\\text{none}"),
        ("\\text{None}", "\\text{no answer}"),
    ],
)
def test_wrong_answer(reference: str, expected: str) -> None:
    assert wrong_answer(reference) == expected
