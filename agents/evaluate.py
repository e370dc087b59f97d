"""Evaluate a policy on a task through its ReasoningEnv (text mode), writing every sample."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from agents.errors import ConfigError
from agents.generate import generate
from brite_envs.env import ReasoningEnv
from brite_envs.task import Task


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 16
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"agent.batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"agent.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"agent.temperature must be >= 0, got {self.temperature}")


@dataclass(frozen=True)
class EvalSummary:
    task: str
    n: int
    accuracy: float
    status_counts: dict[str, int]
    mean_completion_tokens: float
    generation_s: float
    verification_s: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate(
    model: Any,
    tokenizer: Any,
    task: Task,
    indices: list[int],
    config: EvalConfig,
    out_dir: Path | None = None,
) -> EvalSummary:
    """Generate a completion for each problem, grade it through the env, and summarise."""
    if not indices:
        raise ConfigError(f"nothing to evaluate: task {task.name!r} gave no problems")
    envs = [ReasoningEnv(task) for _ in range(min(config.batch_size, len(indices)))]
    rows: list[dict[str, Any]] = []
    gen_s = ver_s = 0.0
    bar = tqdm(total=len(indices), desc=f"eval {task.name}", unit="problem")
    for start in range(0, len(indices), config.batch_size):
        batch = indices[start : start + config.batch_size]
        infos = [env.reset(options={"index": i})[1] for env, i in zip(envs, batch, strict=False)]
        t0 = time.perf_counter()
        gens = generate(
            model,
            tokenizer,
            [info["messages"] for info in infos],
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            seed=config.seed + start,
        )
        t1 = time.perf_counter()
        for env, info, g in zip(envs, infos, gens, strict=False):
            _, reward, _, _, final = env.step(g.text)
            verdict = final["verdict"]
            rows.append(
                {
                    "problem_id": info["problem_id"],
                    "completion": g.text,
                    "completion_tokens": len(g.completion_ids),
                    "finished": g.finished,
                    "reward": float(reward),
                    "verdict": verdict.to_dict(),
                }
            )
        ver_s += time.perf_counter() - t1
        gen_s += t1 - t0
        bar.update(len(batch))
    bar.close()
    counts = Counter(r["verdict"]["status"] for r in rows)
    summary = EvalSummary(
        task=task.name,
        n=len(rows),
        accuracy=sum(r["reward"] for r in rows) / len(rows),
        status_counts=dict(sorted(counts.items())),
        mean_completion_tokens=sum(r["completion_tokens"] for r in rows) / len(rows),
        generation_s=round(gen_s, 3),
        verification_s=round(ver_s, 3),
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "samples.jsonl", "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        (out_dir / "metrics.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return summary
