"""The evaluation harness: sample n completions per problem (or read them from a file), grade
them with the env's verifier, and keep every graded sample.

Why it is built this way:

- **Resumable.** Each batch of graded samples is appended to ``<out>/<env>/samples.jsonl`` and
  flushed to disk before the next batch starts. A rerun of the same eval on the same ``out``
  skips every ``(env, problem_id, sample_index)`` already there: nothing is generated or graded
  twice. A line torn by a kill (only the last line can be) is dropped with a warning.
- **Reproducible.** Sample ``i`` of a problem is drawn with its own seed, derived from
  ``(seed, env, problem_id, i)`` (:func:`sample_seed`), so a resumed eval draws the very
  samples the uninterrupted one would have, whatever else shares its batch.
- **Exact.** Completions keep the ids the policy produced (never re-tokenized); token counts
  come from those ids.
- **Any system.** ``completions=FILE`` grades completions from elsewhere (one JSON object per
  line: ``problem_id``, ``completion``, optional ``sample_index`` and ``env``), with no model.

The layout of an eval directory (read back by :mod:`agents.compare`)::

    out/run.json                 label, model, envs, n, the config a resumed eval must match
    out/<env>/samples.jsonl      one agents.metrics.SampleRecord per line
    out/<env>/timing.jsonl       generation and verification seconds of each batch
    out/<env>/metrics.json       agents.metrics.EnvMetrics
    out/report.md, out/report.html, out/plots/*.png

:func:`run_eval` runs a whole :class:`EvalPlan` (``brite-agent eval``); :func:`evaluate` is the
one-task form the training agents use for held-out accuracy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from agents.errors import ConfigError, EvalDataError
from agents.metrics import EnvMetrics, SampleRecord, Timing, compute_metrics
from agents.models import ModelSpec
from brite_envs.task import Task
from brite_envs.types import Problem

if TYPE_CHECKING:  # agents.policy imports torch; the CLI imports this module
    from agents.policy import Policy

BACKENDS = ("hf", "vllm")
RUN_JSON = "run.json"
LOCK = ".lock"
SAMPLES = "samples.jsonl"
TIMING = "timing.jsonl"
METRICS = "metrics.json"
RESUME_KEYS = (
    "model",
    "backend",
    "completions",
    "envs",
    "n",
    "temperature",
    "top_p",
    "max_new_tokens",
    "seed",
)
"""The recorded config keys that decide the samples: a resumed eval must match them all."""
VLLM_GPU_MEMORY = 0.85
"""Share of GPU memory vLLM may take in an eval (no trainer shares the GPU)."""


class TornLineWarning(UserWarning):
    """The last line of a JSONL file was cut short by a kill and has been dropped."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plain_settings(node: Any) -> dict[str, Any]:
    """A plain dict from an OmegaConf node or a mapping (None gives {})."""
    if node is None:
        return {}
    from omegaconf import OmegaConf

    if OmegaConf.is_config(node):
        return dict(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
    if not isinstance(node, Mapping):
        raise ConfigError(f"expected a mapping of settings, got {type(node).__name__}")
    return dict(node)


# -- sampling settings ----------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalConfig:
    """How completions are sampled. Greedy unless ``temperature > 0``; ``n`` samples per
    problem (n > 1 needs temperature > 0, or the samples are identical)."""

    batch_size: int = 16
    """Sequences per generation call (and completions per grading call)."""
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    n: int = 1
    """Samples per problem."""
    top_p: float = 1.0

    def __post_init__(self) -> None:
        for key, minimum in (("batch_size", 1), ("max_new_tokens", 1), ("seed", 0)):
            value = getattr(self, key)
            name = "seed" if key == "seed" else f"agent.{key}"
            if not _is_int(value):
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}")
        if not _is_int(self.n) or self.n < 1:
            raise ValueError(f"n (samples per problem) must be an integer >= 1, got {self.n!r}")
        for key in ("temperature", "top_p"):
            value = getattr(self, key)
            if not _is_number(value) or value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"agent.{key} must be a finite number, got {value!r}")
        if self.temperature < 0:
            raise ValueError(f"agent.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"agent.top_p must be in (0, 1], got {self.top_p}")
        if self.n > 1 and self.temperature == 0:
            raise ValueError(
                f"n>1 samples with temperature=0 are identical; set temperature>0 (got n={self.n})"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "temperature": float(self.temperature),
            "seed": self.seed,
            "n": self.n,
            "top_p": float(self.top_p),
        }


def sample_seed(seed: int, env: str, problem_id: str, sample_index: int) -> int:
    """The seed of one sample, in [0, 2**31): a function of the run seed, the env, the problem
    and the sample index only, so batching and resuming never change what is drawn."""
    key = json.dumps([int(seed), env, problem_id, int(sample_index)])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") & 0x7FFFFFFF


# -- samplers -------------------------------------------------------------------------------------
def decode_prompt(sampler: Policy, prompt_ids: Sequence[int]) -> str:
    """The prompt text as the policy saw it, special tokens included."""
    return str(sampler.tokenizer.decode(list(prompt_ids), skip_special_tokens=False))


def vllm_problem(spec: ModelSpec) -> str | None:
    """Why ``backend=vllm`` cannot run ``spec`` here (no GPU, no vllm, a model vLLM cannot
    load from a folder or hub id), or None."""
    from agents.vllm_policy import vllm_unavailable_reason

    reason = vllm_unavailable_reason()
    if reason is not None:
        return (
            f"backend=vllm needs a CUDA GPU and the vllm extra (pip install 'brite[vllm]'): "
            f"{reason}; use backend=hf"
        )
    if spec.source not in ("hub", "path") or spec.gguf_file:
        return (
            f"backend=vllm loads a hub id or a Hugging Face folder; model {spec.name!r} "
            f"(source {spec.source!r}) is neither: use backend=hf, or model.source=path "
            "model.name_or_path=DIR"
        )
    return None


def load_sampler(spec: ModelSpec, backend: str, *, seed: int) -> Policy:
    """Load the model of ``spec`` behind the ``backend`` ('hf' or 'vllm')."""
    if backend == "vllm":
        problem = vllm_problem(spec)
        if problem is not None:
            raise ConfigError(problem)
        from transformers import AutoTokenizer

        from agents.vllm_policy import VLLMPolicy

        tokenizer = AutoTokenizer.from_pretrained(spec.name_or_path)
        policy = VLLMPolicy(
            spec.name_or_path,
            tokenizer,
            seed=seed,
            gpu_memory_utilization=VLLM_GPU_MEMORY,
            dtype=spec.dtype,
        )
        return policy
    if backend != "hf":
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    from agents.models import load_model
    from agents.policy import HFPolicy

    model, tokenizer = load_model(spec, seed=seed)
    return HFPolicy(model, tokenizer)


# -- JSONL files ----------------------------------------------------------------------------------
def read_jsonl(path: Path, *, repair_torn: bool) -> list[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line of ``path``. With
    ``repair_torn``, a last line that a kill cut short (no newline, not valid JSON) is
    removed from the file with a :class:`TornLineWarning`; any other bad line is an
    EvalDataError naming the file and line."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    rows: list[tuple[int, Any]] = []
    for number, raw in enumerate(lines, 1):
        rows.extend(_parse_line(path, number, raw))
    if tail.strip():
        number = len(lines) + 1
        try:
            rows.extend(_parse_line(path, number, tail))
        except EvalDataError:
            if not repair_torn:
                raise
            with open(path, "r+b") as fh:
                fh.truncate(len(data) - len(tail))
            warnings.warn(
                f"{path}:{number}: dropped the last line, cut short by a kill "
                f"({len(tail)} bytes, no newline); its sample will be made again",
                TornLineWarning,
                stacklevel=2,
            )
        else:
            if repair_torn:
                with open(path, "ab") as fh:
                    fh.write(b"\n")
    return rows


def _parse_line(path: Path, number: int, raw: bytes) -> list[tuple[int, Any]]:
    if not raw.strip():
        return []
    try:
        return [(number, json.loads(raw))]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise EvalDataError(
            f"{path}:{number}: not valid JSON ({reason}); every line must be one JSON object: "
            "fix or remove the line"
        ) from None


class JsonlAppender:
    """Appends rows to a JSONL file, flushed and synced per call, so a kill loses at most the
    batch being written (and tears at most the last line)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        text = "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows)
        self._fh.write(text)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` atomically (a kill leaves the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# -- completions files ----------------------------------------------------------------------------
COMPLETION_FIELDS = ("problem_id", "completion", "sample_index", "env")


@dataclass(frozen=True)
class CompletionRow:
    """One row of a completions file, checked: its problem exists in its env's eval split."""

    env: str
    problem_id: str
    sample_index: int
    completion: str
    line: int
    """Line number in the file, for error messages."""


def read_completions(path: Path, tasks: Mapping[str, Task]) -> dict[str, list[CompletionRow]]:
    """The rows of a completions file grouped by env (file order). Each line is a JSON object
    with ``problem_id`` and ``completion``, optional ``sample_index`` (default: the order of
    appearance within its problem) and ``env`` (required when ``tasks`` holds several envs).
    Any bad row is an EvalDataError naming ``file:line`` and the fix; nothing is skipped."""
    from brite_envs.errors import BriteEnvError

    example = '{"problem_id": "...", "completion": "...", "sample_index": 0}'
    if not path.is_file():
        raise EvalDataError(
            f"completions file {path} does not exist; pass completions= a JSONL file with one "
            f"object per line, e.g. {example}"
        )
    envs = list(tasks)
    out: dict[str, list[CompletionRow]] = {e: [] for e in envs}
    seen: dict[tuple[str, str, int], int] = {}
    counts: dict[tuple[str, str], int] = {}
    for number, row in read_jsonl(path, repair_torn=False):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise EvalDataError(
                f"{where}: expected a JSON object like {example}, got {type(row).__name__}"
            )
        unknown = sorted(str(k) for k in row if k not in COMPLETION_FIELDS)
        if unknown:
            raise EvalDataError(
                f"{where}: unknown field(s) {unknown}; a row has {list(COMPLETION_FIELDS[:2])} "
                f"and optionally {list(COMPLETION_FIELDS[2:])}: rename or remove them"
            )
        for key in ("problem_id", "completion"):
            if key not in row:
                raise EvalDataError(f"{where}: missing field {key!r}; a row looks like {example}")
            if not isinstance(row[key], str):
                raise EvalDataError(
                    f"{where}: field {key!r} must be a string, got {row[key]!r}; quote it"
                )
        env = row.get("env")
        if env is None:
            if len(envs) > 1:
                raise EvalDataError(
                    f"{where}: missing field 'env': with several envs ({', '.join(envs)}) every "
                    "row names its env"
                )
            env = envs[0]
        elif env not in tasks:
            raise EvalDataError(
                f"{where}: env {env!r} is not being evaluated (env={','.join(envs)}); "
                "fix the row or add the env to env=[...]"
            )
        pid = row["problem_id"]
        task = tasks[env]
        try:
            task.index_of(pid)
        except BriteEnvError as exc:
            raise EvalDataError(
                f"{where}: {exc}; fix the problem_id or evaluate the env/split it belongs to "
                "(env=..., env.eval_split=...)"
            ) from None
        if "sample_index" in row:
            index = row["sample_index"]
            if not _is_int(index) or index < 0:
                raise EvalDataError(
                    f"{where}: field 'sample_index' must be an integer >= 0, got {index!r}"
                )
        else:
            index = counts.get((env, pid), 0)
        counts[(env, pid)] = counts.get((env, pid), 0) + 1
        key = (env, pid, index)
        if key in seen:
            raise EvalDataError(
                f"{where}: duplicate sample_index {index} for problem {pid!r} (first on line "
                f"{seen[key]}); give each sample of a problem its own sample_index"
            )
        seen[key] = number
        out[env].append(CompletionRow(env, pid, index, row["completion"], number))
    for env, rows in out.items():
        if not rows:
            raise EvalDataError(
                f"{path}: no completions for env {env!r}; add rows for it or drop it from env="
            )
    return out


# -- what an eval covers --------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvSelection:
    """One env of an eval: the first ``size`` problems (None: all) of its ``split``."""

    name: str
    split: str
    size: int | None = None
    task_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"env name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.split, str) or not self.split:
            raise ValueError(f"env.eval_split must be a split name, got {self.split!r}")
        if self.size is not None and (not _is_int(self.size) or self.size < 1):
            raise ValueError(f"env.eval_size must be null or an integer >= 1, got {self.size!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split": self.split,
            "size": self.size,
            "task_kwargs": dict(self.task_kwargs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvSelection:
        return cls(
            str(data["name"]), str(data["split"]), data["size"], dict(data["task_kwargs"] or {})
        )

    def make_task(self) -> Task:
        """The task of this env's eval split, loaded (bad data fails here, in one line)."""
        import brite_envs

        try:
            task = brite_envs.make_task(self.name, split=self.split, **dict(self.task_kwargs))
            len(task)
        except brite_envs.BriteEnvError as exc:
            raise ConfigError(f"env={self.name} (env.eval_split={self.split!r}): {exc}") from exc
        return task


@dataclass(frozen=True)
class EvalPlan:
    """A whole ``brite-agent eval``: which envs, which model (or completions file), how to
    sample, and where the results go. Build it with :meth:`from_cfgs`."""

    envs: tuple[EnvSelection, ...]
    out: Path
    label: str
    sampling: EvalConfig = field(default_factory=EvalConfig)
    model: ModelSpec | None = None
    """The policy to sample from; None when grading a completions file."""
    completions: Path | None = None
    backend: str = "hf"
    resume: bool = True
    """Continue an eval already in ``out`` (False: discard its outputs and start over)."""
    progress: bool = True

    def __post_init__(self) -> None:
        names = [e.name for e in self.envs]
        if not names:
            raise ValueError("an eval needs at least one env")
        if len(set(names)) != len(names):
            raise ValueError(f"env lists an env twice: {names}")
        if (self.model is None) == (self.completions is None):
            raise ValueError("an eval samples from a model or grades completions=FILE (one)")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"label must be a non-empty string, got {self.label!r}")

    @property
    def model_name(self) -> str:
        """What run.json records as the model: its name, or the completions file."""
        if self.model is not None:
            return self.model.name
        assert self.completions is not None
        return f"completions:{self.completions.name}"

    def recorded_config(self) -> dict[str, Any]:
        """The config run.json records; a resumed eval must match its :data:`RESUME_KEYS`.
        Grading a file records no sampling settings (the file fixes the samples)."""
        envs = [e.to_dict() for e in self.envs]
        if self.completions is not None:
            return {
                "model": None,
                "backend": None,
                "completions": str(self.completions.resolve()),
                "envs": envs,
                "n": None,
                "temperature": None,
                "top_p": None,
                "max_new_tokens": None,
                "seed": None,
                "batch_size": self.sampling.batch_size,
            }
        assert self.model is not None
        s = self.sampling
        return {
            "model": {
                "name": self.model.name,
                "source": self.model.source,
                "name_or_path": self.model.name_or_path,
                "gguf_file": self.model.gguf_file,
                "dtype": self.model.dtype,
            },
            "backend": self.backend,
            "completions": None,
            "envs": envs,
            "n": s.n,
            "temperature": float(s.temperature),
            "top_p": float(s.top_p),
            "max_new_tokens": s.max_new_tokens,
            "seed": s.seed,
            "batch_size": s.batch_size,
        }

    @classmethod
    def from_cfgs(
        cls,
        cfgs: Sequence[Any],
        *,
        out: str | None = None,
        label: str | None = None,
        completions: str | None = None,
        resume: bool = True,
    ) -> EvalPlan:
        """The plan from one composed Hydra config per env (``agent=eval``; the model, agent
        and seed are those of the first). ``out`` defaults to ``runs/eval-<model>-<envs>``,
        ``label`` to the name of ``out``. Raises ConfigError naming the bad key."""
        from agents.models import model_spec

        if not cfgs:
            raise ConfigError("eval needs at least one env")
        first = cfgs[0]
        agent = plain_settings(first.agent)
        known = {"name", "batch_size", "max_new_tokens", "temperature", "top_p", "n"}
        known |= {"backend", "progress"}
        unknown = sorted(set(agent) - known)
        if unknown:
            raise ConfigError(
                f"agent.{unknown[0]} is not an eval setting; known: {', '.join(sorted(known))}"
            )
        try:
            sampling = EvalConfig(
                batch_size=agent.get("batch_size", 16),
                max_new_tokens=agent.get("max_new_tokens", 256),
                temperature=agent.get("temperature", 0.0),
                top_p=agent.get("top_p", 1.0),
                n=agent.get("n", 1),
                seed=first.get("seed", 0),
            )
            envs = tuple(
                EnvSelection(
                    name=str(c.env.name),
                    split=str(c.env.eval_split),
                    size=c.env.get("eval_size"),
                    task_kwargs=plain_settings(c.env.get("task_kwargs")),
                )
                for c in cfgs
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        backend = str(agent.get("backend", "hf"))
        progress = agent.get("progress", True)
        if not isinstance(progress, bool):
            raise ConfigError(f"agent.progress must be true or false, got {progress!r}")
        names = "+".join(e.name for e in envs)
        model: ModelSpec | None = None
        path: Path | None = None
        if completions is not None:
            if not completions:
                raise ConfigError("completions= needs a file: completions=FILE.jsonl")
            path = Path(completions).expanduser()
            default_out = f"runs/eval-{path.stem}-{names}"
        else:
            model = model_spec(first)
            if backend == "vllm":
                problem = vllm_problem(model)
                if problem is not None:
                    raise ConfigError(problem)
            default_out = f"runs/eval-{model.name}-{names}"
        out_dir = Path(out if out else default_out).expanduser()
        try:
            return cls(
                envs=envs,
                out=out_dir,
                label=label if label else out_dir.resolve().name,
                sampling=sampling,
                model=model,
                completions=path,
                backend=backend,
                resume=resume,
                progress=progress,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class RunInfo:
    """``run.json`` of an eval directory."""

    label: str
    model: str
    envs: list[str]
    n: int
    """Samples per problem (for a completions file: the most any problem has)."""
    config: dict[str, Any]
    created: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "model": self.model,
            "envs": list(self.envs),
            "n": self.n,
            "config": dict(self.config),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> RunInfo:
        keys = ("label", "model", "envs", "n", "config", "created")
        if not isinstance(data, dict) or any(k not in data for k in keys):
            raise EvalDataError(
                f"{where}: not an eval's run.json (it needs keys {list(keys)}); this directory "
                "holds something else (a training run?): choose a new out="
            )
        if not isinstance(data["config"], dict) or not isinstance(data["envs"], list):
            raise EvalDataError(f"{where}: 'config' must be an object and 'envs' a list")
        return cls(
            str(data["label"]),
            str(data["model"]),
            [str(e) for e in data["envs"]],
            int(data["n"]),
            dict(data["config"]),
            str(data["created"]),
        )


# -- results --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvResult:
    """One env of a finished eval."""

    env: str
    metrics: EnvMetrics
    records: tuple[SampleRecord, ...]
    samples_path: Path | None
    metrics_path: Path | None
    resumed: int
    """Samples found already graded (from an earlier, interrupted run)."""
    made: int
    """Samples graded by this run."""


@dataclass(frozen=True)
class EvalResult:
    """A finished :class:`EvalPlan`."""

    out: Path
    label: str
    envs: tuple[EnvResult, ...]
    report_md: Path
    report_html: Path


# -- one env --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _BatchTiming:
    samples: int
    generation_s: float
    verification_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "generation_s": self.generation_s,
            "verification_s": self.verification_s,
        }


class _EnvLog:
    """An env's samples.jsonl and timing.jsonl: what an earlier run left, and appends."""

    def __init__(self, folder: Path | None, *, fresh: bool) -> None:
        self.folder = folder
        self.timing = Timing()
        self.previous: list[tuple[str, Any]] = []
        """``(file:line, row)`` of the samples an earlier run graded."""
        self._samples: JsonlAppender | None = None
        self._timing: JsonlAppender | None = None
        if folder is None:
            return
        samples, timing = folder / SAMPLES, folder / TIMING
        if fresh:
            for p in (samples, timing):
                p.unlink(missing_ok=True)
        if samples.exists():
            self.previous = [
                (f"{samples}:{n}", row) for n, row in read_jsonl(samples, repair_torn=True)
            ]
        if timing.exists():
            gen = ver = 0.0
            for n, row in read_jsonl(timing, repair_torn=True):
                if not isinstance(row, dict) or not all(
                    _is_number(row.get(k)) for k in ("generation_s", "verification_s")
                ):
                    raise EvalDataError(
                        f"{timing}:{n}: expected {{samples, generation_s, verification_s}}; "
                        "fix or remove the line (it only holds timings)"
                    )
                gen += float(row["generation_s"])
                ver += float(row["verification_s"])
            self.timing = Timing(gen, ver)
        self._samples = JsonlAppender(samples)
        self._timing = JsonlAppender(timing)

    def append(self, records: Sequence[SampleRecord], generation_s: float, ver_s: float) -> None:
        before = self.timing
        self.timing = Timing(before.generation_s + generation_s, before.verification_s + ver_s)
        if self._samples is None or self._timing is None:
            return
        self._samples.append([r.to_json() for r in records])
        self._timing.append([_BatchTiming(len(records), generation_s, ver_s).to_dict()])

    def close(self) -> None:
        for fh in (self._samples, self._timing):
            if fh is not None:
                fh.close()


def _previous_records(
    log: _EnvLog, env: str, allowed: Callable[[str, int], str | None]
) -> dict[tuple[str, int], SampleRecord]:
    """The records an earlier run graded, checked: right env, a known problem and sample
    index (``allowed`` returns why not), no duplicates."""
    done: dict[tuple[str, int], SampleRecord] = {}
    lines: dict[tuple[str, int], str] = {}
    for where, row in log.previous:
        record = SampleRecord.from_json(row, where=where)
        if record.env != env:
            raise EvalDataError(
                f"{where}: a sample of env {record.env!r} in the samples of env {env!r}; this "
                "file was not written by this eval: remove it or choose a new out="
            )
        key = (record.problem_id, record.sample_index)
        why = allowed(*key)
        if why is not None:
            raise EvalDataError(
                f"{where}: {why}; the directory holds another eval's samples: choose a new out= "
                "or pass resume=false to start over"
            )
        if key in done:
            raise EvalDataError(
                f"{where}: duplicate sample (problem {key[0]!r}, sample_index {key[1]}; first "
                f"at {lines[key]}): remove one of the two lines"
            )
        done[key] = record
        lines[key] = where
    return done


def _bar(total: int, done: int, desc: str, enabled: bool) -> Any:
    return tqdm(total=total, initial=done, desc=desc, unit="sample", disable=not enabled)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _record(
    env: str,
    problem: Problem,
    index: int,
    prompt: str,
    completion: str,
    verdict: Any,
    sample: Any | None = None,
) -> SampleRecord:
    return SampleRecord(
        env=env,
        problem_id=problem.id,
        sample_index=index,
        prompt=prompt,
        completion=completion,
        verdict=verdict,
        prompt_tokens=None if sample is None else len(sample.prompt_ids),
        completion_tokens=None if sample is None else len(sample.completion_ids),
        finished=None if sample is None else bool(sample.finished),
        subject=problem.meta.subject,
        level=problem.meta.level,
    )


def generate_and_grade(
    env: str,
    task: Task,
    problems: Sequence[Problem],
    sampler: Callable[[], Policy],
    config: EvalConfig,
    folder: Path | None,
    *,
    fresh: bool = False,
    progress: bool = True,
) -> tuple[list[SampleRecord], Timing, int]:
    """``config.n`` samples of each problem, graded by the task's verifier; each batch is
    appended to ``folder/samples.jsonl`` (None: kept in memory) before the next starts.
    Samples already in the file are kept, not remade (``fresh`` discards them first).
    ``sampler`` is called (to load the model) only when something is left to sample.
    Returns all records (problem order, then sample index), the timing, and how many were
    already there."""
    position = {p.id: i for i, p in enumerate(problems)}
    log = _EnvLog(folder, fresh=fresh)
    try:

        def allowed(pid: str, index: int) -> str | None:
            if pid not in position:
                return f"problem {pid!r} is not among the {len(problems)} problems of this eval"
            if index >= config.n:
                return f"sample_index {index} is not below n={config.n}"
            return None

        done = _previous_records(log, env, allowed)
        resumed = len(done)
        jobs = [(p, i) for p in problems for i in range(config.n)]
        made: dict[tuple[str, int], SampleRecord] = dict(done)
        prompts: dict[str, tuple[list[int], str]] = {}
        policy: Policy | None = None
        with _bar(len(jobs), resumed, f"eval {env}", progress) as bar:
            # Fixed batches of the full job list: a resumed run batches what is left of each
            # exactly as the uninterrupted run did.
            for chunk in _chunks(jobs, config.batch_size):
                todo = [(p, i) for p, i in chunk if (p.id, i) not in done]
                if not todo:
                    continue
                if policy is None:
                    policy = sampler()
                for p, _ in todo:
                    if p.id not in prompts:
                        ids = policy.encode(task.render_messages(p))
                        prompts[p.id] = (ids, decode_prompt(policy, ids))
                t0 = time.perf_counter()
                samples = policy.sample(
                    [prompts[p.id][0] for p, _ in todo],
                    seeds=[sample_seed(config.seed, env, p.id, i) for p, i in todo],
                    max_new_tokens=config.max_new_tokens,
                    temperature=config.temperature,
                    top_p=config.top_p,
                )
                t1 = time.perf_counter()
                verdicts = task.grade_many([p for p, _ in todo], [s.text for s in samples])
                t2 = time.perf_counter()
                records = [
                    _record(env, p, i, prompts[p.id][1], s.text, v, s)
                    for (p, i), s, v in zip(todo, samples, verdicts, strict=True)
                ]
                log.append(records, t1 - t0, t2 - t1)
                made.update(((r.problem_id, r.sample_index), r) for r in records)
                bar.update(len(records))
    finally:
        log.close()
    ordered = sorted(made.values(), key=lambda r: (position[r.problem_id], r.sample_index))
    return ordered, log.timing, resumed


def grade_rows(
    env: str,
    task: Task,
    rows: Sequence[CompletionRow],
    source: Path,
    batch_size: int,
    folder: Path | None,
    *,
    fresh: bool = False,
    progress: bool = True,
) -> tuple[list[SampleRecord], Timing, int]:
    """Grade the rows of a completions file (``source``) like :func:`generate_and_grade`
    grades samples: appended per batch, rows already graded kept (their completion must be
    the file's, or the file changed since: an error)."""
    by_key = {(r.problem_id, r.sample_index): r for r in rows}
    order: dict[str, int] = {}
    for r in rows:
        order.setdefault(r.problem_id, len(order))
    log = _EnvLog(folder, fresh=fresh)
    try:

        def allowed(pid: str, index: int) -> str | None:
            if (pid, index) in by_key:
                return None
            return f"problem {pid!r} sample_index {index} is not in {source}"

        done = _previous_records(log, env, allowed)
        for (pid, i), record in done.items():
            row = by_key[(pid, i)]
            if record.completion != row.completion:
                raise EvalDataError(
                    f"{source}:{row.line}: the completion of problem {pid!r} sample_index {i} "
                    f"differs from the one already graded in {folder}; the file changed since: "
                    "choose a new out= or pass resume=false to grade it afresh"
                )
        made: dict[tuple[str, int], SampleRecord] = dict(done)
        todo = [r for r in rows if (r.problem_id, r.sample_index) not in done]
        with _bar(len(rows), len(done), f"grade {env}", progress) as bar:
            for chunk in _chunks(todo, batch_size):
                problems = [task[task.index_of(r.problem_id)] for r in chunk]
                t0 = time.perf_counter()
                verdicts = task.grade_many(problems, [r.completion for r in chunk])
                t1 = time.perf_counter()
                records = [
                    _record(env, p, r.sample_index, "", r.completion, v)
                    for p, r, v in zip(problems, chunk, verdicts, strict=True)
                ]
                log.append(records, 0.0, t1 - t0)
                made.update(((r.problem_id, r.sample_index), r) for r in records)
                bar.update(len(records))
    finally:
        log.close()
    ordered = sorted(made.values(), key=lambda r: (order[r.problem_id], r.sample_index))
    return ordered, log.timing, len(done)


# -- a whole eval ---------------------------------------------------------------------------------
def _created_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    for key in RESUME_KEYS:
        if old.get(key) != new.get(key):
            out.append(f"{key}: {json.dumps(old.get(key))} there, {json.dumps(new.get(key))} now")
    return out


def _discard(out: Path, info: RunInfo) -> None:
    """Remove the outputs of the eval in ``out`` (and only those files)."""
    for env in info.envs:
        folder = out / env
        for name in (SAMPLES, TIMING, METRICS):
            (folder / name).unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    for name in ("report.md", "report.html", RUN_JSON):
        (out / name).unlink(missing_ok=True)
    plots = out / "plots"
    if plots.is_dir() and all(p.suffix == ".png" for p in plots.iterdir()):
        shutil.rmtree(plots)


def _check_out(plan: EvalPlan) -> RunInfo | None:
    """Check ``plan.out`` without writing: a new or empty folder, or an eval to continue (the
    same config, ``resume``) or to discard (``resume=false``). Returns its run.json, if any."""
    out = plan.out
    run_json = out / RUN_JSON
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={out} is a file; choose a folder for out=")
    if not run_json.exists():
        if out.is_dir() and any(p.name != LOCK for p in out.iterdir()):
            raise ConfigError(
                f"out={out} exists and is not an eval directory (no {RUN_JSON}); choose a new "
                "out= (an eval never writes into a folder it did not create)"
            )
        return None
    try:
        data = json.loads(run_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvalDataError(
            f"{run_json}:{exc.lineno}: not valid JSON ({exc.msg}); fix it, or choose a new out="
        ) from None
    previous = RunInfo.from_dict(data, where=str(run_json))
    if plan.resume:
        diffs = _differences(previous.config, plan.recorded_config())
        if diffs:
            raise ConfigError(
                f"out={out} holds an eval with a different config ({'; '.join(diffs)}); rerun "
                "with the same settings to continue it, choose a new out=, or pass resume=false "
                "to discard its samples and start over"
            )
    return previous


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` so that two evals never append to the same files."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process guard
        yield
        return
    with open(out / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                f"out={out} is in use by another eval; wait for it or choose a new out="
            ) from None
        yield  # closing the file releases the lock


def run_eval(plan: EvalPlan) -> EvalResult:
    """Run ``plan``: every env's samples (continuing what ``plan.out`` holds), its metrics,
    the report, and run.json. Nothing is written before the config, the data, the completions
    file and ``out`` have been checked."""
    tasks = {e.name: e.make_task() for e in plan.envs}
    rows: dict[str, list[CompletionRow]] = {}
    if plan.completions is not None:
        rows = read_completions(plan.completions, tasks)
        n = max(
            len(group)
            for env_rows in rows.values()
            for group in _group_by_problem(env_rows).values()
        )
    else:
        n = plan.sampling.n
    _check_out(plan)
    plan.out.mkdir(parents=True, exist_ok=True)
    with _locked(plan.out):
        previous = _check_out(plan)  # again, now that no other eval can change it
        if previous is not None and not plan.resume:
            _discard(plan.out, previous)
            previous = None
        info = RunInfo(
            label=plan.label,
            model=plan.model_name,
            envs=[e.name for e in plan.envs],
            n=n,
            config=plan.recorded_config(),
            created=previous.created if previous is not None else _created_now(),
        )
        _write_json(plan.out / RUN_JSON, info.to_dict())
        return _run_envs(plan, tasks, rows, n)


def _run_envs(
    plan: EvalPlan, tasks: Mapping[str, Task], rows: Mapping[str, list[CompletionRow]], n: int
) -> EvalResult:
    from agents.report import write_report

    loaded: list[Policy] = []

    def sampler() -> Policy:
        if not loaded:
            assert plan.model is not None
            if plan.progress:
                tqdm.write(f"loading model {plan.model.name} ({plan.backend}) ...", file=sys.stderr)
            loaded.append(load_sampler(plan.model, plan.backend, seed=plan.sampling.seed))
        return loaded[0]

    results = []
    for selection in plan.envs:
        task = tasks[selection.name]
        folder = plan.out / selection.name
        if plan.completions is not None:
            records, timing, resumed = grade_rows(
                selection.name,
                task,
                rows[selection.name],
                plan.completions,
                plan.sampling.batch_size,
                folder,
                progress=plan.progress,
            )
        else:
            count = len(task) if selection.size is None else min(selection.size, len(task))
            records, timing, resumed = generate_and_grade(
                selection.name,
                task,
                [task[i] for i in range(count)],
                sampler,
                plan.sampling,
                folder,
                progress=plan.progress,
            )
        metrics = compute_metrics(records, timing)
        _write_json(folder / METRICS, metrics.to_dict())
        results.append(
            EnvResult(
                selection.name,
                metrics,
                tuple(records),
                folder / SAMPLES,
                folder / METRICS,
                resumed,
                len(records) - resumed,
            )
        )
    md, html = write_report(
        plan.out,
        {r.env: (r.metrics, r.records) for r in results},
        title=f"Evaluation: {plan.label}",
        info=_report_info(plan, n),
    )
    return EvalResult(plan.out, plan.label, tuple(results), md, html)


def _group_by_problem(rows: Sequence[CompletionRow]) -> dict[str, list[CompletionRow]]:
    groups: dict[str, list[CompletionRow]] = {}
    for r in rows:
        groups.setdefault(r.problem_id, []).append(r)
    return groups


def _report_info(plan: EvalPlan, n: int) -> dict[str, str]:
    info = {"label": plan.label, "model": plan.model_name}
    if plan.completions is not None:
        info["completions"] = str(plan.completions)
    else:
        s = plan.sampling
        info.update(
            {
                "backend": plan.backend,
                "samples per problem (n)": str(n),
                "temperature": str(s.temperature),
                "top_p": str(s.top_p),
                "max_new_tokens": str(s.max_new_tokens),
                "seed": str(s.seed),
            }
        )
    for e in plan.envs:
        size = "all" if e.size is None or plan.completions is not None else str(e.size)
        info[f"env {e.name}"] = f"split {e.split}, problems {size}"
    info["out"] = str(plan.out)
    return info


# -- the training agents' held-out evaluation -----------------------------------------------------
@dataclass(frozen=True)
class EvalSummary:
    """What a training run records of one held-out evaluation."""

    task: str
    n: int
    """Samples graded (problems x samples per problem)."""
    accuracy: float
    status_counts: dict[str, int]
    mean_completion_tokens: float
    generation_s: float
    verification_s: float
    metrics: EnvMetrics | None = None
    """Every metric (pass@k, maj@k, breakdowns) of the samples."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "n": self.n,
            "accuracy": self.accuracy,
            "status_counts": dict(self.status_counts),
            "mean_completion_tokens": self.mean_completion_tokens,
            "generation_s": self.generation_s,
            "verification_s": self.verification_s,
            "metrics": None if self.metrics is None else self.metrics.to_dict(),
        }


def evaluate(
    model: Any,
    tokenizer: Any,
    task: Task,
    indices: list[int],
    config: EvalConfig,
    out_dir: Path | None = None,
    *,
    env: str | None = None,
    progress: bool = True,
) -> EvalSummary:
    """Sample ``config.n`` completions for each problem ``indices`` of ``task`` with the HF
    model, grade them, and summarise; ``out_dir`` (if given) gets samples.jsonl, timing.jsonl
    and metrics.json, written afresh (a training run re-runs a killed eval stage whole)."""
    if not indices:
        raise ConfigError(f"nothing to evaluate: task {task.name!r} gave no problems")
    problems = [task[i] for i in indices]
    from agents.policy import HFPolicy

    sampler = HFPolicy(model, tokenizer)
    records, timing, _ = generate_and_grade(
        env or task.name,
        task,
        problems,
        lambda: sampler,
        config,
        out_dir,
        fresh=True,
        progress=progress,
    )
    metrics = compute_metrics(records, timing)
    summary = EvalSummary(
        task=task.name,
        n=metrics.samples,
        accuracy=metrics.accuracy,
        status_counts={k: v for k, v in sorted(metrics.status_counts.items()) if v},
        mean_completion_tokens=metrics.mean_completion_tokens or 0.0,
        generation_s=round(timing.generation_s, 3),
        verification_s=round(timing.verification_s, 3),
        metrics=metrics,
    )
    if out_dir is not None:
        _write_json(out_dir / METRICS, summary.to_dict())
    return summary
