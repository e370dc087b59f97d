"""`brite-agent eval` and `brite-agent compare`: a completions file graded into metrics checked
against hand-computed values, a tiny-model eval end to end with its report, resuming a killed
eval without regenerating or regrading, per-sample seeds, comparisons of real eval directories,
and bad input that stops with the file and line."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from html.parser import HTMLParser
from math import comb
from pathlib import Path
from typing import Any

import pytest

from agents.cli import cmd_eval, main, parse_env_list
from agents.errors import ConfigError, EvalDataError
from brite_envs.task import Task
from brite_envs.tasks.arith import Arith
from tests.conftest import REPO_ROOT

ARITH = Arith(split="test", size=1000, levels=[1, 2])
"""The problems `env=arith` evaluates (its default task_kwargs)."""


def problem(i: int) -> Any:
    return ARITH[i]


def right(i: int) -> str:
    return ARITH.format_answer(problem(i).reference)


def wrong(i: int, delta: int = 1) -> str:
    return ARITH.format_answer(str(int(problem(i).reference) + delta))


NO_ANSWER = "I am not sure how to solve this."


def write_rows(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def graded_file(tmp_path: Path) -> Path:
    """4 arith problems, 3 samples each (levels 1, 2, 1, 2), in a deliberately scrambled
    order: P0 all right; P1 right, then the same wrong answer twice; P2 no answer, a wrong
    answer, right; P3 never an answer."""
    pid = [problem(i).id for i in range(4)]
    rows: list[dict[str, Any]] = [
        {"problem_id": pid[1], "completion": wrong(1), "sample_index": 2},
        {"problem_id": pid[0], "completion": right(0)},
        {"problem_id": pid[2], "completion": NO_ANSWER},
        {"problem_id": pid[1], "completion": right(1), "sample_index": 0},
        {"problem_id": pid[3], "completion": NO_ANSWER},
        {"problem_id": pid[0], "completion": right(0)},
        {"problem_id": pid[2], "completion": wrong(2, 2)},
        {"problem_id": pid[1], "completion": wrong(1), "sample_index": 1},
        {"problem_id": pid[3], "completion": NO_ANSWER},
        {"problem_id": pid[2], "completion": right(2), "env": "arith"},
        {"problem_id": pid[0], "completion": right(0)},
        {"problem_id": pid[3], "completion": NO_ANSWER},
    ]
    return write_rows(tmp_path / "completions.jsonl", rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def unbiased(n: int, c: int, k: int) -> float:
    return 1.0 - comb(n - c, k) / comb(n, k)


# -- (1) a completions file with known answers ----------------------------------------------------
def test_completions_file_metrics_match_hand_computed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = graded_file(tmp_path)
    out = tmp_path / "graded"
    assert main(["eval", "env=arith", f"completions={source}", f"out={out}", "label=base"]) == 0
    printed = capsys.readouterr().out
    assert "arith" in printed and "41.7" in printed  # accuracy 5/12 in the summary table

    m = json.loads((out / "arith" / "metrics.json").read_text())
    assert (m["env"], m["problems"], m["samples"], m["n"]) == ("arith", 4, 12, 3)
    assert m["accuracy"] == pytest.approx(5 / 12)
    assert m["status_counts"] == {
        "correct": 5,
        "incorrect": 3,
        "unparsable": 4,
        "timeout": 0,
        "error": 0,
    }
    correct = [3, 1, 1, 0]  # per problem, of n = 3
    for k, expected in ((1, 5 / 12), (2, 7 / 12), (3, 3 / 4)):
        formula = sum(unbiased(3, c, k) for c in correct) / 4
        assert formula == pytest.approx(expected)
        assert m["pass_at_k"][str(k)] == pytest.approx(expected)
    # maj@1: P0, P1 (its sample 0 is right); maj@2: P1's tie goes to the answer seen first
    # (sample 0, right); maj@3: P1's two wrong votes win, P2's tie goes to its wrong answer.
    assert m["maj_at_k"] == pytest.approx({"1": 0.5, "2": 0.5, "3": 0.25})
    assert m["by_subject"] == {}
    assert m["by_level"]["1"] == pytest.approx(
        {"problems": 2, "samples": 6, "accuracy": 4 / 6, "pass_at_1": 2 / 3}
    )
    assert m["by_level"]["2"] == pytest.approx(
        {"problems": 2, "samples": 6, "accuracy": 1 / 6, "pass_at_1": 1 / 6}
    )
    assert m["mean_completion_tokens"] is None  # no tokenizer when grading a file
    texts = [r["completion"] for r in read_jsonl(source)]
    assert m["mean_completion_chars"] == pytest.approx(sum(map(len, texts)) / 12)
    assert m["timing"]["generation_s"] == 0.0 and m["timing"]["verification_s"] >= 0

    samples = read_jsonl(out / "arith" / "samples.jsonl")
    assert len(samples) == 12
    by_key = {(s["problem_id"], s["sample_index"]): s for s in samples}
    assert by_key[(problem(1).id, 0)]["verdict"]["status"] == "correct"
    assert by_key[(problem(1).id, 2)]["verdict"]["extracted"] == str(int(problem(1).reference) + 1)
    assert by_key[(problem(0).id, 2)]["sample_index"] == 2  # order of appearance
    assert all(s["prompt"] == "" and s["finished"] is None for s in samples)
    assert {s["level"] for s in samples} == {"1", "2"}

    run = json.loads((out / "run.json").read_text())
    assert (run["label"], run["model"], run["envs"], run["n"]) == (
        "base",
        "completions:completions.jsonl",
        ["arith"],
        3,
    )
    assert run["config"]["completions"] == str(source.resolve())
    assert (out / "report.md").is_file() and (out / "report.html").is_file()


def test_completions_for_several_envs_name_their_env(tmp_path: Path, data_dir: Path) -> None:
    from brite_envs.tasks.gsm8k import GSM8K

    gsm = GSM8K(split="test")
    rows = [
        {"env": "gsm8k", "problem_id": gsm[0].id, "completion": gsm.reference_completion(gsm[0])},
        {"env": "gsm8k", "problem_id": gsm[1].id, "completion": NO_ANSWER},
        {"env": "arith", "problem_id": problem(0).id, "completion": right(0)},
    ]
    source = write_rows(tmp_path / "both.jsonl", rows)
    out = tmp_path / "both"
    assert main(["eval", "env=[arith, gsm8k]", f"completions={source}", f"out={out}"]) == 0
    assert json.loads((out / "run.json").read_text())["envs"] == ["arith", "gsm8k"]
    gsm_metrics = json.loads((out / "gsm8k" / "metrics.json").read_text())
    assert (gsm_metrics["problems"], gsm_metrics["accuracy"]) == (2, 0.5)
    assert json.loads((out / "arith" / "metrics.json").read_text())["accuracy"] == 1.0
    # Without the env field, a row of a two-env eval is ambiguous.
    write_rows(source, [{"problem_id": problem(0).id, "completion": right(0)}])
    with pytest.raises(EvalDataError, match=r"both.jsonl:1: missing field 'env': with several"):
        cmd_eval(["env=[arith,gsm8k]", f"completions={source}", f"out={out}-2"])


def test_env_list_parsing() -> None:
    assert parse_env_list("arith") == ("arith",)
    assert parse_env_list("[gsm8k, math500]") == ("gsm8k", "math500")
    assert parse_env_list("gsm8k,math500") == ("gsm8k", "math500")
    with pytest.raises(ConfigError, match="'gsm9k' is not a known env; valid choices: aime24"):
        parse_env_list("[gsm8k,gsm9k]")
    with pytest.raises(ConfigError, match="names an env twice"):
        parse_env_list("[arith,arith]")
    with pytest.raises(ConfigError, match="is not a list"):
        parse_env_list("[arith,gsm8k")


# -- (2) a tiny model, end to end -----------------------------------------------------------------
TINY = [
    "eval",
    "model=tiny",
    "env=arith",
    "env.eval_size=4",
    "n=2",
    "temperature=1.0",
    "max_new_tokens=6",
    "batch_size=3",
]


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        src = dict(attrs).get("src")
        if tag == "img" and src:
            self.images.append(src)


def test_tiny_model_eval_end_to_end_with_report(
    tmp_path: Path, one_thread: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiny"
    assert main([*TINY, f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "pass@n" in printed and str(out / "report.html") in printed.replace("\n", "")

    samples = read_jsonl(out / "arith" / "samples.jsonl")
    assert len(samples) == 8
    assert sorted((s["problem_id"], s["sample_index"]) for s in samples) == sorted(
        (problem(i).id, j) for i in range(4) for j in range(2)
    )
    questions = {problem(i).id: problem(i).question for i in range(4)}
    for s in samples:
        assert 0 < s["completion_tokens"] <= 6 and s["prompt_tokens"] > 0
        assert isinstance(s["finished"], bool)
        assert s["verdict"]["status"] in ("correct", "incorrect", "unparsable")
        assert questions[s["problem_id"]] in s["prompt"]  # the prompt as the model saw it
    m = json.loads((out / "arith" / "metrics.json").read_text())
    assert (m["problems"], m["samples"], m["n"]) == (4, 8, 2)
    assert set(m["pass_at_k"]) == {"1", "2"} and set(m["maj_at_k"]) == {"1", "2"}
    assert sum(m["status_counts"].values()) == 8
    assert m["mean_completion_tokens"] == pytest.approx(
        sum(s["completion_tokens"] for s in samples) / 8
    )
    assert m["timing"]["generation_s"] > 0

    md = (out / "report.md").read_text(encoding="utf-8")
    assert "arith" in md and "plots/" in md
    page = (out / "report.html").read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(page)
    parser.close()
    assert "html" in parser.tags and "table" in parser.tags
    assert parser.images, "the HTML report embeds its plots"
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script" not in page and 'src="http' not in page and 'src="plots/' not in page


def test_each_sample_has_its_own_seed_whatever_its_batch(tiny: Any, one_thread: None) -> None:
    from agents.evaluate import sample_seed
    from agents.policy import HFPolicy

    model, tokenizer = tiny
    sampler = HFPolicy(model, tokenizer)
    prompts = [sampler.encode(ARITH.render_messages(problem(i))) for i in range(3)]
    seeds = [sample_seed(0, "arith", problem(i).id, 0) for i in range(3)]
    assert len(set(seeds)) == 3
    assert sample_seed(0, "arith", problem(0).id, 1) != seeds[0]
    assert sample_seed(1, "arith", problem(0).id, 0) != seeds[0]
    kw = {"max_new_tokens": 8, "temperature": 1.0, "top_p": 1.0}
    batch = sampler.sample(prompts, seeds=seeds, **kw)
    alone = sampler.sample(prompts[2:], seeds=seeds[2:], **kw)
    assert alone[0].completion_ids == batch[2].completion_ids
    assert alone[0].prompt_ids == tuple(prompts[2])
    again = sampler.sample(prompts[::-1], seeds=seeds[::-1], **kw)
    assert [s.completion_ids for s in again[::-1]] == [s.completion_ids for s in batch]
    other = sampler.sample(prompts[:1] * 2, seeds=[seeds[0], seeds[0] + 1], **kw)
    assert other[0].completion_ids == batch[0].completion_ids
    assert other[1].completion_ids != other[0].completion_ids
    for s in batch:  # exact ids: the text is their decoding, the stop id kept in the ids
        ids = list(s.completion_ids[:-1] if s.finished else s.completion_ids)
        assert s.text == tokenizer.decode(ids, skip_special_tokens=True)


# -- (3) resume -----------------------------------------------------------------------------------
class _Counter:
    """Counts what is sampled and graded, by wrapping the real methods."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from agents.policy import HFPolicy

        self.graded = 0
        self.sampled = 0
        grade, sample = Task.grade_many, HFPolicy.sample

        def grade_many(task: Task, problems: Any, completions: Any) -> Any:
            self.graded += len(completions)
            return grade(task, problems, completions)

        def sample_rows(policy: Any, prompts: Any, **kw: Any) -> Any:
            self.sampled += len(prompts)
            return sample(policy, prompts, **kw)

        monkeypatch.setattr(Task, "grade_many", grade_many)
        monkeypatch.setattr(HFPolicy, "sample", sample_rows)


def _comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "timing"}


def test_a_killed_eval_resumes_without_regenerating_or_regrading(
    tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    assert main([*TINY, f"out={clean}", "agent.progress=false"]) == 0
    assert main([*TINY, f"out={resumed}", "agent.progress=false"]) == 0
    samples = resumed / "arith" / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    assert len(lines) == 8
    kept = b"".join(lines[:4])
    samples.write_bytes(kept + lines[4][: len(lines[4]) // 2])  # killed while writing line 5

    counter = _Counter(monkeypatch)
    with pytest.warns(UserWarning, match=r"samples.jsonl:5: dropped the last line"):
        assert main([*TINY, f"out={resumed}", "agent.progress=false"]) == 0
    assert (counter.sampled, counter.graded) == (4, 4)  # only the 4 missing samples
    after = samples.read_bytes()
    assert after.startswith(kept)  # finished samples untouched (verdicts, elapsed times)
    rows, reference = read_jsonl(samples), read_jsonl(clean / "arith" / "samples.jsonl")

    def key(r: dict[str, Any]) -> tuple[str, int]:
        return (r["problem_id"], r["sample_index"])

    def strip(r: dict[str, Any]) -> dict[str, Any]:
        return {**r, "verdict": {**r["verdict"], "elapsed_s": None}}

    assert [strip(r) for r in sorted(rows, key=key)] == [
        strip(r) for r in sorted(reference, key=key)
    ]
    final = json.loads((resumed / "arith" / "metrics.json").read_text())
    assert _comparable(final) == _comparable(
        json.loads((clean / "arith" / "metrics.json").read_text())
    )

    # A finished eval run again grades nothing and never loads the model.
    from agents import evaluate

    def no_model(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model must not be loaded for a finished eval")

    monkeypatch.setattr(evaluate, "load_sampler", no_model)
    assert main([*TINY, f"out={resumed}", "agent.progress=false"]) == 0
    assert (counter.sampled, counter.graded) == (4, 4)
    assert samples.read_bytes() == after


@pytest.mark.slow
def test_sigkill_mid_eval_then_resume_matches_a_clean_run(
    tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["model=tiny", "env=arith", "env.eval_size=40", "n=2", "temperature=1.0"]
    args += ["max_new_tokens=24", "batch_size=1", "agent.progress=false"]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "agents.cli", "eval", *args, f"out={killed}"]
    proc = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    samples = killed / "arith" / "samples.jsonl"
    try:
        while proc.poll() is None:
            if samples.exists() and samples.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = samples.read_bytes()
    whole = before[: before.rfind(b"\n") + 1]
    done = whole.count(b"\n")
    assert 3 <= done < 80, "the eval was killed part-way"

    counter = _Counter(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a torn last line, if the kill made one
        assert main(["eval", *args, f"out={killed}"]) == 0
    assert (counter.sampled, counter.graded) == (80 - done, 80 - done)
    assert samples.read_bytes().startswith(whole)
    clean = tmp_path / "clean"
    assert main(["eval", *args, f"out={clean}"]) == 0
    assert _comparable(json.loads((killed / "arith" / "metrics.json").read_text())) == (
        _comparable(json.loads((clean / "arith" / "metrics.json").read_text()))
    )


def test_resume_checks_the_config_and_resume_false_starts_over(
    tmp_path: Path, one_thread: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    source = graded_file(tmp_path)
    assert main(["eval", "env=arith", f"completions={source}", f"out={out}"]) == 0
    capsys.readouterr()
    assert main([*TINY, f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert "holds an eval with a different config" in err and "resume=false" in err
    assert "model: null there" in err
    assert len(read_jsonl(out / "arith" / "samples.jsonl")) == 12  # untouched

    assert main([*TINY, f"out={out}", "resume=false", "agent.progress=false"]) == 0
    assert len(read_jsonl(out / "arith" / "samples.jsonl")) == 8
    assert json.loads((out / "run.json").read_text())["model"] == "tiny"

    # The completions file changed under an eval that graded it: an error naming the line.
    graded = tmp_path / "graded"
    assert main(["eval", "env=arith", f"completions={source}", f"out={graded}"]) == 0
    text = source.read_text().splitlines()
    text[1] = json.dumps({"problem_id": problem(0).id, "completion": wrong(0)})
    source.write_text("\n".join(text) + "\n")
    capsys.readouterr()
    assert main(["eval", "env=arith", f"completions={source}", f"out={graded}"]) == 2
    err = capsys.readouterr().err
    assert f"{source}:2: the completion of problem" in err and "resume=false" in err

    # Two evals never append to the same files.
    import fcntl

    with open(graded / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        capsys.readouterr()
        assert main(["eval", "env=arith", f"completions={source}", f"out={graded}"]) == 2
        assert "is in use by another eval" in capsys.readouterr().err

    # A folder that is not an eval is never written into.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["eval", "env=arith", f"completions={source}", f"out={other}"]) == 2
    assert "is not an eval directory" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_a_corrupt_line_before_the_last_is_an_error_not_a_skip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = graded_file(tmp_path)
    out = tmp_path / "graded"
    assert main(["eval", "env=arith", f"completions={source}", f"out={out}"]) == 0
    samples = out / "arith" / "samples.jsonl"
    lines = samples.read_text().splitlines()
    lines[2] = lines[2][:20]
    samples.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["eval", "env=arith", f"completions={source}", f"out={out}"]) == 2
    assert f"{samples}:3: not valid JSON" in capsys.readouterr().err


# -- (4) compare ----------------------------------------------------------------------------------
def test_compare_two_real_eval_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base_src = graded_file(tmp_path)
    better_src = write_rows(
        tmp_path / "better.jsonl",
        [
            {"problem_id": problem(i).id, "completion": right(i), "sample_index": j}
            for i in range(4)
            for j in range(3)
        ],
    )
    base, better = tmp_path / "base", tmp_path / "better"
    assert main(["eval", "env=arith", f"completions={base_src}", f"out={base}"]) == 0
    assert main(["eval", "env=arith", f"completions={better_src}", f"out={better}"]) == 0
    capsys.readouterr()
    table = tmp_path / "table"
    assert main(["compare", str(base), str(better), "baseline=base", f"out={table}"]) == 0
    printed = capsys.readouterr().out
    md = (table / "compare.md").read_text(encoding="utf-8")
    assert (table / "compare.html").is_file()
    assert md.strip() in printed
    base_row = next(line for line in md.splitlines() if line.startswith("| base"))
    better_row = next(line for line in md.splitlines() if line.startswith("| better"))
    assert re.search(r"41\.7 \[\d+\.\d, \d+\.\d\]", base_row)  # 5/12 with its interval
    assert re.search(r"100\.0\** \[100\.0, 100\.0\] \+58\.3 \[\d+\.\d, \d+\.\d\]", better_row)

    assert main(["compare", str(base), str(tmp_path / "missing")]) == 2
    assert "missing is not a directory" in capsys.readouterr().err
    assert main(["compare", str(base), str(better), "baseline=nope", f"out={table}"]) == 2
    assert "baseline 'nope' is not one of the runs" in capsys.readouterr().err
    assert main(["compare", str(base), "metric=pass@1"]) == 2
    assert "compare takes eval directories and baseline=" in capsys.readouterr().err


# -- (5) bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        (["{ROW0}", '{"problem_id": "arith/test/s0/L1/0", "completion": '], ":2: not valid JSON"),
        (["{ROW0}", "{ROW0}", '{"problem_id": "nope/1", "completion": "x"}'], ":3: task "),
        (['{"problem_id": "arith/test/s0/L1/0"}'], ":1: missing field 'completion'"),
        (['{"completion": "x"}'], ":1: missing field 'problem_id'"),
        (
            [
                '{"problem_id": "arith/test/s0/L1/0", "completion": "a", "sample_index": 1}',
                '{"problem_id": "arith/test/s0/L1/0", "completion": "b"}',
                '{"problem_id": "arith/test/s0/L1/0", "completion": "c"}',
            ],
            ":2: duplicate sample_index 1 for problem 'arith/test/s0/L1/0' (first on line 1)",
        ),
        (
            ['{"problem_id": "arith/test/s0/L1/0", "completion": "a", "sample_index": -1}'],
            ":1: field 'sample_index' must be an integer >= 0, got -1",
        ),
        (
            ['{"problem_id": "arith/test/s0/L1/0", "completion": "a", "sample_idx": 0}'],
            ":1: unknown field(s) ['sample_idx']",
        ),
        (['["arith/test/s0/L1/0", "a"]'], ":1: expected a JSON object"),
        (['{"problem_id": 7, "completion": "a"}'], ":1: field 'problem_id' must be a string"),
        (
            ['{"problem_id": "arith/test/s0/L1/0", "completion": "a", "env": "gsm8k"}'],
            ":1: env 'gsm8k' is not being evaluated",
        ),
    ],
)
def test_bad_completions_file_names_the_line(
    tmp_path: Path, lines: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    row0 = json.dumps({"problem_id": problem(0).id, "completion": right(0)})
    source = write_rows(tmp_path / "bad.jsonl", [line.replace("{ROW0}", row0) for line in lines])
    out = tmp_path / "out"
    assert main(["eval", "env=arith", f"completions={source}", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("brite-agent: error:") and len(err.splitlines()) == 1
    assert f"{source}{needle}" in err
    assert not out.exists()  # nothing is written before the input is checked


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["completions=/nonexistent/c.jsonl"], "completions file /nonexistent/c.jsonl does not"),
        (["model=tiny", "n=0"], "n (samples per problem) must be an integer >= 1, got 0"),
        (["model=tiny", "n=4"], "n>1 samples with temperature=0 are identical; set temperature>0"),
        (["model=tiny", "temperature=-1"], "agent.temperature must be >= 0, got -1"),
        (["completions=x.jsonl", "n=2"], "n= does not apply to completions=FILE"),
        (["model=tiny", "backend=vllm"], "backend=vllm needs a CUDA GPU and the vllm extra"),
        (["model=tiny", "backend=tpu"], "backend must be one of hf, vllm, got 'tpu'"),
        (["model=tiny", "agent=rs"], "eval always uses agent=eval"),
        (["model=tiny", "resume=maybe"], "resume must be true or false"),
        (["model=tiny", "env=[arith,gsm9k]"], "'gsm9k' is not a known env"),
        (["model=tiny", "agent.k=2"], "Could not override 'agent.k'"),
        (["model=tiny", "oops"], "'oops' is not key=value"),
        (["env=arith", "env=gsm8k"], "env= is given twice"),
    ],
)
def test_bad_eval_arguments_are_one_clear_line(
    tmp_path: Path, args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    env = [] if any(a.startswith("env=") for a in args) else ["env=arith"]
    assert main(["eval", *env, *args, f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("brite-agent: error:") and len(err.splitlines()) == 1
    assert needle in err
    assert not out.exists()


def test_eval_cfg_prints_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--cfg", "model=tiny", "env=[arith,gsm8k]", "n=3", "temperature=0.6"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["out"] == "runs/eval-tiny-arith+gsm8k" and plan["label"] == "eval-tiny-arith+gsm8k"
    config = plan["config"]
    assert (config["n"], config["temperature"], config["backend"]) == (3, 0.6, "hf")
    assert [e["name"] for e in config["envs"]] == ["arith", "gsm8k"]
    assert [e["size"] for e in config["envs"]] == [32, 64]  # each env's own eval_size


def test_usage_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    usage = capsys.readouterr().out
    for command in ("list", "run", "eval", "compare", "completions=FILE", "baseline=LABEL"):
        assert command in usage
