"""Run directories: config record, stage checkpoints that survive a kill, metrics, and budget.

Layout of ``out/``::

    run.json              format, creation time, attempts (1 + number of resumes)
    config.json/.yaml     the run's configuration, as first written
    metrics.jsonl         one JSON object per line: stage, step, time, attempt, values
    budget.json           live budget counters (informational; resumes use stage snapshots)
    stages/<name>/        one folder per completed stage (``iter1/psi`` → stages/iter1/psi):
        model/            save_pretrained of the model and tokenizer
        state.pt          optional extra state (value head, optimizer, ...)
        rng.pt            Python/NumPy/torch RNG state at completion
        budget.json       the budget snapshot at completion
        DONE              written last: stage, completion index, time, info
    stages/.tmp/          stages being written; removed when the run is opened again
    final/                the final policy, loadable by AutoModelForCausalLM.from_pretrained
    summary.json          config, stages, budget per stage and in total, results

Why: a BRiTE run is a sequence of expensive stages (ψ-update, θ-update, per iteration). A stage
is written into ``stages/.tmp`` and renamed into place only once complete, so a kill mid-stage
leaves every earlier stage intact, and a resumed run restarts at the first incomplete stage
with the budget counted up to the last completed one.

Resume semantics: ``resume=False`` needs ``out`` absent or empty. ``resume=True`` continues the
run in ``out`` if the config matches (keys in ``ignore_keys`` aside); if ``out`` holds no run
yet, it starts fresh (logged), so a preemptible job can always be launched with resume=true.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.errors import AgentError

if TYPE_CHECKING:
    from agents.distill import TrainMetrics
    from agents.generate import Generation

log = logging.getLogger(__name__)

FORMAT = 1
_STAGES = "stages"
_TMP = ".tmp"
_DONE = "DONE"
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*")
_OWN_FILES = frozenset({"config.json", "config.yaml", ".lock", "metrics.jsonl", "tb"})
_OWN_TEMP = re.compile(r"\.(config\.json|config\.yaml|run\.json)\.tmp-[0-9a-f]+")
_RESERVED = frozenset({"stage", "step", "time", "attempt"})


class RunDirError(AgentError):
    """A run directory cannot be used as asked (wrong config, not a run, busy, bad stage)."""


# -- budget --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Counts:
    """Work done: samples and sampled completion tokens generated, and tokens trained on
    (completion tokens, and whole sequences with the prompt)."""

    samples: int = 0
    generated_tokens: int = 0
    trained_completion_tokens: int = 0
    trained_total_tokens: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Counts.{f.name} must be an int >= 0, got {value!r}")

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            *(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self))
        )

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> Counts:
        return cls(**{f.name: int(data.get(f.name, 0)) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class BudgetLimit:
    """Caps for comparing methods under the same budget; None means no cap. ``trained_tokens``
    caps trained completion tokens."""

    samples: int | None = None
    generated_tokens: int | None = None
    trained_tokens: int | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"BudgetLimit.{f.name} must be an int or None, got {value!r}")
            if value is not None and value < 1:
                raise ValueError(f"BudgetLimit.{f.name} must be >= 1 (or None), got {value}")


class Budget:
    """Counts per stage and in total. Mutable: agents add to it as they work; a run directory
    snapshots it with every completed stage and restores it on resume."""

    def __init__(self, stages: Mapping[str, Counts] | None = None) -> None:
        self._stages: dict[str, Counts] = dict(stages or {})

    def add(
        self,
        stage: str,
        *,
        samples: int = 0,
        generated_tokens: int = 0,
        trained_completion_tokens: int = 0,
        trained_total_tokens: int = 0,
    ) -> None:
        delta = Counts(samples, generated_tokens, trained_completion_tokens, trained_total_tokens)
        self._stages[stage] = self._stages.get(stage, Counts()) + delta

    def add_generations(self, stage: str, generations: Sequence[Generation]) -> None:
        """Count sampled completions and their tokens (EOS included, prompts not)."""
        self.add(
            stage,
            samples=len(generations),
            generated_tokens=sum(len(g.completion_ids) for g in generations),
        )

    def add_training(self, stage: str, metrics: TrainMetrics) -> None:
        """Count the tokens an SFT/DPO run trained on (over all its epochs)."""
        self.add(
            stage,
            trained_completion_tokens=metrics.trained_completion_tokens,
            trained_total_tokens=metrics.trained_total_tokens,
        )

    def stage(self, name: str) -> Counts:
        return self._stages.get(name, Counts())

    @property
    def stages(self) -> dict[str, Counts]:
        return dict(self._stages)

    @property
    def total(self) -> Counts:
        total = Counts()
        for counts in self._stages.values():
            total = total + counts
        return total

    def exhausted(self, limit: BudgetLimit) -> str | None:
        """Why the budget has reached ``limit`` (a sentence), or None while there is room."""
        total = self.total
        for name, used, cap in (
            ("samples", total.samples, limit.samples),
            ("generated_tokens", total.generated_tokens, limit.generated_tokens),
            ("trained_tokens", total.trained_completion_tokens, limit.trained_tokens),
        ):
            if cap is not None and used >= cap:
                return f"budget reached: {name} {used} >= limit {cap}"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "stages": {k: v.to_json() for k, v in self._stages.items()},
            "total": self.total.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Budget:
        return cls({k: Counts.from_json(v) for k, v in data.get("stages", {}).items()})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Budget) and self._stages == other._stages

    def __repr__(self) -> str:
        return f"Budget(total={self.total})"


# -- metrics -------------------------------------------------------------------------------------
_TB_NOTE_SHOWN = False


class MetricsLogger:
    """Appends metrics to ``metrics.jsonl`` and, when TensorBoard is installed, to ``tb/``
    (tags ``<stage>/<key>``). Non-finite values are written as null."""

    def __init__(self, folder: Path, *, attempt: int = 1, tensorboard: bool = True) -> None:
        self.path = Path(folder) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.attempt = attempt
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = _summary_writer(Path(folder) / "tb") if tensorboard else None

    def log(self, stage: str, step: int, values: Mapping[str, float]) -> None:
        clash = _RESERVED & set(values)
        if clash:
            raise ValueError(
                f"metric names {sorted(clash)} are reserved for the line's own fields; rename them"
            )
        line: dict[str, Any] = {
            "stage": stage,
            "step": int(step),
            "time": time.time(),
            "attempt": self.attempt,
        }
        for key, value in values.items():
            number = float(value)
            line[key] = number if math.isfinite(number) else None
            if self._tb is not None and math.isfinite(number):
                self._tb.add_scalar(f"{stage}/{key}", number, int(step))
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def log_fn(self, stage: str) -> Callable[[int, Mapping[str, float]], None]:
        """A callback for :func:`agents.distill.sft`/``dpo``'s ``on_log``."""
        return lambda step, values: self.log(stage, step, values)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _summary_writer(folder: Path) -> Any | None:
    global _TB_NOTE_SHOWN
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _TB_NOTE_SHOWN:
            log.info("tensorboard is not installed; metrics go to metrics.jsonl only")
            _TB_NOTE_SHOWN = True
        return None
    return SummaryWriter(log_dir=str(folder))


# -- RNG state ------------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, in a form ``torch.load`` reads
    with ``weights_only=True``."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`capture_rng_state` captured."""
    import numpy as np
    import torch

    random.setstate(state["python"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- checkpoints ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """A completed stage: its folder, completion order, and what was saved with it."""

    stage: str
    path: Path
    index: int
    """0 for the first stage completed in the run, then 1, 2, ..."""
    info: Mapping[str, Any]

    @property
    def model_dir(self) -> Path:
        """The ``save_pretrained`` folder (model and tokenizer): pass it to ``from_pretrained``
        or ``ModelSpec(source="path", name_or_path=...)``."""
        folder = self.path / "model"
        if not folder.is_dir():
            raise RunDirError(
                f"stage {self.stage!r} has no model folder (pruned by prune_models?): {folder}"
            )
        return folder

    def load_state(self) -> dict[str, Any]:
        """The extra state saved with the stage ({} if none)."""
        import torch

        path = self.path / "state.pt"
        return torch.load(path, weights_only=True) if path.exists() else {}

    def budget(self) -> Budget:
        return Budget.from_json(json.loads((self.path / "budget.json").read_text()))

    def restore_rng(self) -> None:
        """Restore the RNG state of the moment the stage completed."""
        import torch

        restore_rng_state(torch.load(self.path / "rng.pt", weights_only=True))


# -- run directory --------------------------------------------------------------------------------
class RunDir:
    """A run's output directory. See the module docstring for layout and resume semantics.

    Typical loop::

        with RunDir(cfg.out, cfg_dict, resume=cfg.resume) as run:
            for name in plan:
                if run.is_complete(name):
                    continue
                ...  # load from run.checkpoint(previous).model_dir, train, count into run.budget
                run.save_stage(name, model=model, tokenizer=tok)
            run.save_final(model, tok)
            run.write_summary({"accuracy": acc})
    """

    def __init__(
        self,
        out: Path | str,
        config: Mapping[str, Any],
        *,
        resume: bool,
        ignore_keys: Collection[str] = ("resume", "out"),
        tensorboard: bool = True,
    ) -> None:
        self.out = Path(out).expanduser()
        self.config: dict[str, Any] = _jsonable(config, "config")
        self._ignore = tuple(ignore_keys)
        self._lock_file: Any = None
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._open(resume)
        except BaseException:
            self._unlock()
            raise
        self.metrics = MetricsLogger(self.out, attempt=self.attempt, tensorboard=tensorboard)

    # -- opening ----------------------------------------------------------------------------------
    def _open(self, resume: bool) -> None:
        run_json = self.out / "run.json"
        if not run_json.exists():
            stray = sorted(
                p.name
                for p in self.out.iterdir()
                if p.name not in _OWN_FILES and not _OWN_TEMP.fullmatch(p.name)
            )
            if stray:
                raise RunDirError(
                    f"out={self.out} is not empty and holds no brite run (found {stray[:3]}); "
                    "choose a new out="
                )
            if resume:
                log.info("resume=true but %s holds no run yet; starting fresh", self.out)
            self._start()
            return
        previous = json.loads(run_json.read_text())
        old_config = json.loads((self.out / "config.json").read_text())
        diff = _diff(_without(old_config, self._ignore), _without(self.config, self._ignore))
        done = len(self._scan())
        if diff:
            raise RunDirError(
                f"out={self.out} holds a run with a different config ({'; '.join(diff[:3])}"
                f"{'; ...' if len(diff) > 3 else ''}); resume needs the same config: choose a new "
                "out= (or restore the old values)"
            )
        if not resume:
            raise RunDirError(
                f"out={self.out} already holds a run ({done} stages complete); pass resume=true "
                "to continue it or choose a new out="
            )
        self.created = float(previous["created"])
        self.attempt = int(previous["attempts"]) + 1
        _write_json(run_json, {**previous, "attempts": self.attempt})
        self._clean_leftovers()
        latest = self.latest_checkpoint()
        self.budget = latest.budget() if latest is not None else Budget()
        log.info(
            "resuming %s (attempt %d): %d stages complete%s",
            self.out,
            self.attempt,
            done,
            f", latest {latest.stage!r}" if latest else "",
        )

    def _clean_leftovers(self) -> None:
        """Remove what a killed process left half-written: stage and final-model temp folders.
        A previous final model moved aside but not replaced is put back."""
        shutil.rmtree(self.out / _STAGES / _TMP, ignore_errors=True)
        for tmp in self.out.glob(".final.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        for old in self.out.glob(".final.old-*"):
            if (self.out / "final").exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(old, self.out / "final")

    def _start(self) -> None:
        import yaml

        self.created = time.time()
        self.attempt = 1
        self.budget = Budget()
        shutil.rmtree(self.out / _STAGES, ignore_errors=True)
        _write_json(self.out / "config.json", self.config)
        _atomic_write(
            self.out / "config.yaml", yaml.safe_dump(self.config, sort_keys=False, width=100)
        )
        _write_json(
            self.out / "run.json", {"format": FORMAT, "created": self.created, "attempts": 1}
        )

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process guard
            return
        handle = (self.out / ".lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RunDirError(
                f"out={self.out} is in use by another process; wait for it or choose a new out="
            ) from None
        self._lock_file = handle

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def close(self) -> None:
        """Flush metrics and release the directory lock."""
        self.metrics.close()
        self._unlock()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- stages -----------------------------------------------------------------------------------
    def _scan(self) -> dict[str, Checkpoint]:
        root = self.out / _STAGES
        found: dict[str, Checkpoint] = {}
        if not root.is_dir():
            return found
        for done in root.glob(f"**/{_DONE}"):
            if _TMP in done.relative_to(root).parts:
                continue
            meta = json.loads(done.read_text())
            found[meta["stage"]] = Checkpoint(
                meta["stage"], done.parent, int(meta["index"]), meta.get("info", {})
            )
        return dict(sorted(found.items(), key=lambda kv: kv[1].index))

    def completed_stages(self) -> list[str]:
        """Completed stage names, in completion order."""
        return list(self._scan())

    def is_complete(self, stage: str) -> bool:
        _check_stage(stage)
        return (self.out / _STAGES / stage / _DONE).exists()

    def stage(self, name: str) -> Checkpoint | None:
        """The stage's checkpoint if it is complete, else None."""
        return self._scan().get(name) if self.is_complete(name) else None

    def checkpoint(self, stage: str) -> Checkpoint:
        ckpt = self.stage(stage)
        if ckpt is None:
            raise RunDirError(
                f"stage {stage!r} is not complete in {self.out}; complete stages: "
                f"{self.completed_stages() or 'none'}"
            )
        return ckpt

    def latest_checkpoint(self) -> Checkpoint | None:
        """The last completed stage, or None before the first."""
        stages = self._scan()
        return next(reversed(stages.values())) if stages else None

    def next_stage(self, plan: Sequence[str]) -> str | None:
        """The first stage of ``plan`` not yet complete (None when all are). Completed stages
        must be a prefix of ``plan``; anything else means the plan changed under the run."""
        done = self.completed_stages()
        if done != list(plan[: len(done)]):
            raise RunDirError(
                f"completed stages {done} of {self.out} are not the start of the plan "
                f"{list(plan)[: len(done) + 1]}...; the plan changed: choose a new out="
            )
        return plan[len(done)] if len(done) < len(plan) else None

    def save_stage(
        self,
        stage: str,
        *,
        model: Any,
        tokenizer: Any,
        state: Mapping[str, Any] | None = None,
        info: Mapping[str, float | int | str | None] | None = None,
    ) -> Checkpoint:
        """Mark ``stage`` complete with its checkpoint, atomically: everything is written in
        ``stages/.tmp``, ``DONE`` last, then the folder is renamed into place. ``state`` is saved
        with ``torch.save`` (tensors, numbers, strings, lists, dicts) and must load with
        ``weights_only=True``; ``info`` is small JSON metadata kept in DONE."""
        import torch

        _check_stage(stage)
        existing = self._scan()
        if stage in existing:
            raise RunDirError(f"stage {stage!r} is already complete in {self.out}")
        for other in existing:
            if other.startswith(stage + "/") or stage.startswith(other + "/"):
                raise RunDirError(
                    f"stage {stage!r} nests with completed stage {other!r}; stage names must not "
                    "be folders of one another"
                )
        tmp = self.out / _STAGES / _TMP / uuid.uuid4().hex
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        if state:
            torch.save(dict(state), tmp / "state.pt")
        torch.save(capture_rng_state(), tmp / "rng.pt")
        _write_json(tmp / "budget.json", self.budget.to_json())
        meta = {
            "stage": stage,
            "index": len(existing),
            "time": time.time(),
            "attempt": self.attempt,
            "info": _jsonable(info or {}, "info"),
        }
        _write_json(tmp / _DONE, meta)
        final = self.out / _STAGES / stage
        if final.exists():  # a leftover without DONE (copied in, or from an older layout)
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        _write_json(self.out / "budget.json", self.budget.to_json())
        return Checkpoint(stage, final, len(existing), meta["info"])

    def prune_models(self, keep: Collection[str]) -> list[str]:
        """Delete the model folders of completed stages not in ``keep`` (disk space); their
        metadata, state and budget stay. Returns the stages pruned."""
        pruned = []
        for name, ckpt in self._scan().items():
            folder = ckpt.path / "model"
            if name not in keep and folder.is_dir():
                shutil.rmtree(folder)
                pruned.append(name)
        return pruned

    # -- metrics, final model, summary ---------------------------------------------------------
    def log(self, stage: str, step: int, values: Mapping[str, float]) -> None:
        self.metrics.log(stage, step, values)

    def save_final(self, model: Any, tokenizer: Any) -> Path:
        """Save the final policy to ``out/final`` (replacing an older one atomically), loadable
        with ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``."""
        tmp = self.out / f".final.tmp-{uuid.uuid4().hex}"
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        final = self.out / "final"
        old = self.out / f".final.old-{uuid.uuid4().hex}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(self.out)
        shutil.rmtree(old, ignore_errors=True)
        return final

    def write_summary(self, results: Mapping[str, float | int | str | None] | None = None) -> Path:
        """Write ``summary.json``: config, completed stages with their info and budget, the
        budget per stage and in total, the final model folder, and ``results`` (e.g. eval
        accuracy)."""
        stages = [
            {
                "stage": c.stage,
                "index": c.index,
                "info": dict(c.info),
                "budget": c.budget().to_json()["total"],
            }
            for c in self._scan().values()
        ]
        final = self.out / "final"
        summary = {
            "config": self.config,
            "created": self.created,
            "finished": time.time(),
            "attempts": self.attempt,
            "stages": stages,
            "budget": self.budget.to_json(),
            "final": str(final) if final.is_dir() else None,
            "results": _jsonable(results or {}, "results"),
        }
        path = self.out / "summary.json"
        _write_json(path, summary)
        _write_json(self.out / "budget.json", self.budget.to_json())
        return path


# -- helpers -------------------------------------------------------------------------------------
def _check_stage(stage: str) -> None:
    parts = stage.split("/") if isinstance(stage, str) else []
    if not parts or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise RunDirError(
            f"bad stage name {stage!r}: use '/'-separated parts of letters, digits and _.=+- "
            "that start with a letter or digit, e.g. 'iter1/psi'"
        )


def _jsonable(value: Any, where: str) -> Any:
    """Plain JSON data from mappings, sequences, paths, dataclasses and scalars."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value), where)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(items)]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item(), where)
    raise RunDirError(
        f"{where} holds a {type(value).__name__} ({value!r:.60}), which cannot be written to "
        "JSON; pass plain values (OmegaConf.to_container(cfg, resolve=True) for Hydra configs)"
    )


def _without(config: Mapping[str, Any], keys: Collection[str]) -> dict[str, Any]:
    """``config`` minus the (dotted) ``keys``."""
    out = json.loads(json.dumps(config))
    for key in keys:
        *parents, last = key.split(".")
        node: Any = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two JSON values, as ``key: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(set(old) | set(new)):
            name = f"{prefix}.{key}" if prefix else key
            if key not in old:
                lines.append(f"{name}: (absent) -> {_short(new[key])}")
            elif key not in new:
                lines.append(f"{name}: {_short(old[key])} -> (absent)")
            else:
                lines += _diff(old[key], new[key], name)
        return lines
    return [] if old == new else [f"{prefix or '<root>'}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    _atomic_write(path, json.dumps(data, indent=2) + "\n")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every OS/filesystem can fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def iter_metrics(out: Path | str) -> Iterator[dict[str, Any]]:
    """The lines of ``out/metrics.jsonl`` as dicts (for reports and tests)."""
    path = Path(out) / "metrics.jsonl"
    if path.exists():
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
