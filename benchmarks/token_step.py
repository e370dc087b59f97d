"""Token-mode step overhead: env steps per second against a raw Python loop.

The baseline is the least a rollout loop must do per token without an env: append the id
to a Python list and compare it with EOS. Three env paths are measured over the same ids:
N ``ReasoningEnv`` instances stepped one by one, the same under Gymnasium's
``SyncVectorEnv``, and one ``TokenVectorEnv`` stepped with an ``(N,)`` action array. Grading
is excluded (no episode ends inside the timed window), so this is pure step overhead. Run
at two prompt lengths to show the cost per step does not grow with the sequence.

    python -m benchmarks.token_step [--envs 8] [--tokens 512] [--repeats 3] [--quick]
        [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from brite_envs import ByteTokenizer, ReasoningEnv, TokenVectorEnv
from brite_envs.tasks.arith import Arith

QUICK = {"envs": 4, "tokens": 64, "repeats": 1}
"""The ``--quick`` sizes (smoke runs and tests); explicit options still win."""


def _best(fn: Callable[[], float], repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def raw_loop(ids: np.ndarray, eos: int) -> float:
    """Seconds for the baseline: append each id to a list, check for EOS."""
    rows = [r.tolist() for r in ids]
    t0 = time.perf_counter()
    for row in rows:
        seq: list[int] = []
        for t in row:
            seq.append(t)
            if t == eos:
                break
    return time.perf_counter() - t0


def single_envs(task: Arith, ids: np.ndarray, budget: int) -> float:
    envs = [ReasoningEnv(task, mode="token", max_new_tokens=budget) for _ in range(len(ids))]
    for i, env in enumerate(envs):
        env.reset(options={"index": i})
    rows = [r.tolist() for r in ids]
    t0 = time.perf_counter()
    for env, row in zip(envs, rows, strict=True):
        step = env.step
        for t in row:
            step(t)
    return time.perf_counter() - t0


def sync_vector(task: Arith, ids: np.ndarray, budget: int) -> float:
    envs = gym.vector.SyncVectorEnv(
        [lambda: ReasoningEnv(task, mode="token", max_new_tokens=budget)] * len(ids)
    )
    envs.reset(seed=0)
    cols = ids.T.copy()
    t0 = time.perf_counter()
    for a in cols:
        envs.step(a)
    return time.perf_counter() - t0


def token_vector(task: Arith, ids: np.ndarray, budget: int) -> float:
    venv = TokenVectorEnv(task, len(ids), max_new_tokens=budget)
    venv.reset(options={"indices": list(range(len(ids)))})
    cols = ids.T.copy()
    t0 = time.perf_counter()
    for a in cols:
        venv.step(a)
    return time.perf_counter() - t0


def run(envs: int, tokens: int, repeats: int) -> dict[str, Any]:
    task = Arith(size=max(envs, 8))
    rng = np.random.default_rng(0)
    eos = ByteTokenizer.eos_token_id
    ids = rng.integers(32, 127, size=(envs, tokens), dtype=np.int64)  # no EOS inside
    total = envs * tokens
    results: dict[str, Any] = {
        "envs": envs,
        "tokens_per_env": tokens,
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.python_version()}",
    }
    base = _best(lambda: raw_loop(ids, eos), repeats)
    results["raw_loop_steps_per_s"] = total / base
    for name, fn in (
        ("reasoning_env", single_envs),
        ("sync_vector_env", sync_vector),
        ("token_vector_env", token_vector),
    ):
        for budget_name, budget in (("short", tokens + 1), ("long", tokens * 8)):
            secs = _best(lambda fn=fn, budget=budget: fn(task, ids, budget), repeats)
            results[f"{name}_{budget_name}_steps_per_s"] = total / secs
            results[f"{name}_{budget_name}_ratio_to_raw"] = base / secs
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes: " + str(QUICK))
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if min(args.envs, args.tokens, args.repeats) < 1:
        parser.error("--envs, --tokens and --repeats must be >= 1")
    res = run(args.envs, args.tokens, args.repeats)
    print(f"token-mode step overhead, {res['envs']} envs x {res['tokens_per_env']} tokens")
    print(f"machine: {res['machine']}")
    print(f"{'path':<30}{'steps/s':>14}{'ratio to raw loop':>20}")
    print(f"{'raw python loop (baseline)':<30}{res['raw_loop_steps_per_s']:>14,.0f}{1.0:>20.4f}")
    for key in sorted(res):
        if key.endswith("_steps_per_s") and not key.startswith("raw"):
            stem = key[: -len("_steps_per_s")]
            print(f"{stem:<30}{res[key]:>14,.0f}{res[stem + '_ratio_to_raw']:>20.4f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    main()
