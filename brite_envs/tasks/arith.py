"""Arith: procedural multi-step arithmetic word problems that need no download.

Every problem is a pure function of (seed, split, level, index): the same arguments always
give the same question, answer and worked rationale, on any machine. Levels 1-5 add steps,
larger numbers, and multiplication/division. It is the embedded default task that lets
``brite-agent run`` work on a fresh machine with no hub access.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from brite_envs.errors import EnvConfigError
from brite_envs.task import Task
from brite_envs.types import Problem, ProblemMeta

SPLITS = ("train", "test")
LEVELS = (1, 2, 3, 4, 5)

_NAMES = (
    ("Ava", "she", "her"), ("Ben", "he", "his"), ("Chloe", "she", "her"), ("Diego", "he", "his"),
    ("Emma", "she", "her"), ("Farid", "he", "his"), ("Grace", "she", "her"), ("Hiro", "he", "his"),
    ("Ines", "she", "her"), ("Jonas", "he", "his"), ("Kemi", "she", "her"), ("Liam", "he", "his"),
)  # fmt: skip
_ITEMS = (
    "apples", "marbles", "stickers", "pencils", "coins", "books", "shells", "cards", "beads",
    "stamps", "cookies", "bottle caps",
)  # fmt: skip


@dataclass(frozen=True)
class LevelSpec:
    """What a difficulty level allows: number of operations, operand range, operators."""

    steps: int
    max_operand: int
    ops: tuple[str, ...]


LEVEL_SPECS: dict[int, LevelSpec] = {
    1: LevelSpec(steps=1, max_operand=20, ops=("add", "sub")),
    2: LevelSpec(steps=2, max_operand=50, ops=("add", "sub", "mul")),
    3: LevelSpec(steps=3, max_operand=100, ops=("add", "sub", "mul", "div")),
    4: LevelSpec(steps=4, max_operand=500, ops=("add", "sub", "mul", "div")),
    5: LevelSpec(steps=5, max_operand=1000, ops=("add", "sub", "mul", "div")),
}


def _rng(seed: int, split: str, level: int, index: int) -> np.random.Generator:
    # A stable digest, not Python's salted hash(): problems must match across processes.
    key = hashlib.sha256(f"arith|{seed}|{split}|{level}|{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(key[:8], "little"))


def generate(seed: int, split: str, level: int, index: int) -> Problem:
    """The problem at ``index`` for (seed, split, level): a pure function of its arguments."""
    spec = LEVEL_SPECS[level]
    rng = _rng(seed, split, level, index)
    name, he, his = _NAMES[int(rng.integers(len(_NAMES)))]
    friend = _NAMES[int(rng.integers(len(_NAMES)))][0]
    if friend == name:
        friend = "a friend"
    item = _ITEMS[int(rng.integers(len(_ITEMS)))]
    value = int(rng.integers(2, spec.max_operand + 1))
    sentences = [f"{name} has {value} {item}."]
    steps = [f"{name} starts with {value} {item}."]
    for _ in range(spec.steps):
        op = str(rng.choice(spec.ops))
        if op == "div":
            divisors = [k for k in range(2, 10) if value % k == 0 and value // k > 0]
            if not divisors:
                op = "add"
        if op == "sub" and value < 2:
            op = "add"
        if op == "add":
            b = int(rng.integers(1, spec.max_operand + 1))
            new = value + b
            sentences.append(f"Then {he} gets {b} more {item} from {friend}.")
            steps.append(f"After getting {b} more: {value} + {b} = {new}.")
        elif op == "sub":
            b = int(rng.integers(1, value))
            new = value - b
            sentences.append(f"Then {he} gives {b} {item} to {friend}.")
            steps.append(f"After giving away {b}: {value} - {b} = {new}.")
        elif op == "mul":
            k = int(rng.integers(2, 6))
            new = value * k
            sentences.append(f"Then the number of {item} {he} has becomes {k} times as large.")
            steps.append(f"Multiplying by {k}: {value} × {k} = {new}.")
        else:
            k = int(rng.choice(divisors))
            new = value // k
            sentences.append(
                f"Then {he} splits {his} {item} equally into {k} bags and keeps only one bag."
            )
            steps.append(f"Keeping one of {k} equal bags: {value} ÷ {k} = {new}.")
        value = new
    question = " ".join(sentences) + f" How many {item} does {name} have now?"
    rationale = "\n".join(steps) + f"\nSo the final answer is \\boxed{{{value}}}."
    return Problem(
        id=f"arith/{split}/s{seed}/L{level}/{index}",
        question=question,
        reference=str(value),
        rationale=rationale,
        meta=ProblemMeta(source="arith", index=index, split=split, level=str(level)),
    )


class Arith(Task):
    """Procedural arithmetic word problems, graded by exact integer answer.

    Args:
        split: ``"train"`` or ``"test"``; the two draw from disjoint random streams.
        size: number of problems.
        levels: difficulty levels to include (1-5); problem ``i`` has level
            ``levels[i % len(levels)]``, so every level is equally represented.
        seed: the generator seed; (seed, split, level, index) fixes each problem.
    """

    name = "arith"
    verifier_name = "exact"

    def __init__(
        self,
        *,
        split: str = "test",
        size: int = 1000,
        levels: tuple[int, ...] | list[int] | int = LEVELS,
        seed: int = 0,
        **task_kwargs: object,
    ) -> None:
        super().__init__(**task_kwargs)  # type: ignore[arg-type]
        if split not in SPLITS:
            raise EnvConfigError(f"arith split must be one of {SPLITS}, got {split!r}")
        if not isinstance(size, int) or size < 1:
            raise EnvConfigError(f"arith size must be a positive integer, got {size!r}")
        levels = (levels,) if isinstance(levels, int) else tuple(levels)
        bad = [lv for lv in levels if lv not in LEVEL_SPECS]
        if not levels or bad:
            raise EnvConfigError(f"arith levels must be drawn from {LEVELS}, got {levels!r}")
        self.split = split
        self.size = size
        self.levels = levels
        self.seed = int(seed)

    def _load(self) -> list[Problem]:
        return [
            generate(self.seed, self.split, self.levels[i % len(self.levels)], i)
            for i in range(self.size)
        ]

    def wrong_completion(self, problem: Problem) -> str:
        return self.format_answer(str(int(problem.reference) + 1))
