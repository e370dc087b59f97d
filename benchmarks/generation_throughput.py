"""Generation throughput of the HF rollout backend against plain ``model.generate``.

Ours is ``agents.policy.HFPolicy.sample``: one batched, KV-cached decoding loop that keeps
the exact sampled ids and their log-probs and drops rows as they reach EOS. The anchor is
``model.generate`` on the same model, the same left-padded prompts (Arith problems through
the chat template, ``agents.generate.encode_prompt``), the same batch, ``max_new_tokens`` and
sampling settings: temperature 1.0, top-p 1.0 and no top-k (an explicit ``GenerationConfig``,
so the model's own generation defaults add no logits processor). Both are seeded with the
same seed per repeat (ours through its ``torch.Generator``, generate through
``torch.manual_seed``); the draws differ, so each side counts only the tokens it actually
generated: a row stops at its first EOS (which counts), or at ``max_new_tokens``.

Timed spans: ``HFPolicy.sample`` whole (it also decodes the texts and returns per-token
log-probs, work the anchor does not do), and for the anchor building the padded tensors and
the ``generate`` call. Each repeat runs both, alternating who goes first, after untimed
warm-up repeats; throughput is new tokens per second of wall time, the median over repeats,
and wall time per batch is reported too.

    python -m benchmarks.generation_throughput [--model tiny|smollm2-135m|all] [--batch 8]
        [--max-new-tokens 128] [--repeats 5] [--warmup 1] [--threads N] [--quick]
        [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MODELS = ("tiny", "smollm2-135m")
QUICK = {"model": "tiny", "batch": 4, "max_new_tokens": 16, "repeats": 2, "warmup": 1}
"""The ``--quick`` sizes (smoke runs and tests); explicit options still win."""


@dataclass(frozen=True)
class Timing:
    """One timed batch of one side."""

    seconds: float
    new_tokens: int
    """Tokens actually generated over the batch (each row up to and including its EOS)."""


@dataclass(frozen=True)
class Result:
    """One model's comparison; rates are medians over the timed repeats."""

    model: str
    batch: int
    max_new_tokens: int
    repeats: int
    ours_tokens_per_s: float
    generate_tokens_per_s: float
    ratio: float
    """``ours_tokens_per_s / generate_tokens_per_s``: above 1 means ours is faster."""
    ours_seconds_per_batch: float
    generate_seconds_per_batch: float
    ours_mean_new_tokens: float
    """Mean generated tokens per row (EOS rows stop early)."""
    generate_mean_new_tokens: float
    ours_runs: tuple[Timing, ...]
    generate_runs: tuple[Timing, ...]


def count_new_tokens(rows: Sequence[Sequence[int]], eos_ids: frozenset[int]) -> int:
    """Tokens generated over ``rows`` of ``generate``'s new columns: each row up to and
    including its first EOS, or all of it. Padding after an EOS (which may be the EOS id
    itself) is not generation and is not counted."""
    total = 0
    for row in rows:
        n = len(row)
        for i, t in enumerate(row):
            if t in eos_ids:
                n = i + 1
                break
        total += n
    return total


def prompts_for(tokenizer: Any, batch: int) -> list[list[int]]:
    """``batch`` distinct Arith prompts, encoded as every sampler here encodes them."""
    from agents.generate import encode_prompt
    from brite_envs.tasks.arith import Arith

    task = Arith(split="test", size=max(batch, 8))
    return [encode_prompt(tokenizer, task.render_messages(task[i])) for i in range(batch)]


def load(name: str) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a model preset, as the CLI loads it."""
    from agents.models import load_model
    from benchmarks.ppo_throughput import model_spec

    return load_model(model_spec(name), seed=0)


class Ours:
    """``HFPolicy.sample`` over the batch."""

    def __init__(self, model: Any, tokenizer: Any, prompts: list[list[int]], budget: int) -> None:
        from agents.policy import HFPolicy

        self.policy = HFPolicy(model, tokenizer)
        self.prompts = prompts
        self.budget = budget

    def run(self, seed: int) -> Timing:
        t0 = time.perf_counter()
        samples = self.policy.sample(
            self.prompts, max_new_tokens=self.budget, temperature=1.0, top_p=1.0, seed=seed
        )
        seconds = time.perf_counter() - t0
        return Timing(seconds, sum(len(s.completion_ids) for s in samples))


class Anchor:
    """Plain ``model.generate`` over the same left-padded batch."""

    def __init__(self, model: Any, tokenizer: Any, prompts: list[list[int]], budget: int) -> None:
        from transformers import GenerationConfig

        from agents.policy import HFPolicy

        self.model = model
        self.prompts = prompts
        pad = HFPolicy(model, tokenizer).pad_id  # the same padding id as ours
        self.pad = pad
        self.eos = frozenset({int(tokenizer.eos_token_id)})
        self.config = GenerationConfig(
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,  # 0 disables top-k; the model's own defaults would otherwise apply
            max_new_tokens=budget,
            pad_token_id=pad,
            eos_token_id=int(tokenizer.eos_token_id),
        )

    def run(self, seed: int) -> Timing:
        import torch

        from agents.policy import left_pad

        t0 = time.perf_counter()
        ids, mask = left_pad(self.prompts, self.pad, self.model.device)
        torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, generation_config=self.config
            )
        seconds = time.perf_counter() - t0
        new = out[:, ids.shape[1] :].tolist()
        return Timing(seconds, count_new_tokens(new, self.eos))


def _rate(runs: Sequence[Timing]) -> float:
    return statistics.median(r.new_tokens / r.seconds for r in runs)


def bench(name: str, args: argparse.Namespace) -> Result:
    model, tokenizer = load(name)
    prompts = prompts_for(tokenizer, args.batch)
    ours = Ours(model, tokenizer, prompts, args.max_new_tokens)
    anchor = Anchor(model, tokenizer, prompts, args.max_new_tokens)
    ours_runs: list[Timing] = []
    anchor_runs: list[Timing] = []
    for r in range(args.warmup + args.repeats):
        seed = 1000 + r
        sides = (ours, anchor) if r % 2 == 0 else (anchor, ours)
        timed = {id(side): side.run(seed) for side in sides}
        if r >= args.warmup:
            ours_runs.append(timed[id(ours)])
            anchor_runs.append(timed[id(anchor)])
    ours_rate, anchor_rate = _rate(ours_runs), _rate(anchor_runs)
    rows = args.batch * args.repeats
    return Result(
        model=name,
        batch=args.batch,
        max_new_tokens=args.max_new_tokens,
        repeats=args.repeats,
        ours_tokens_per_s=ours_rate,
        generate_tokens_per_s=anchor_rate,
        ratio=ours_rate / anchor_rate,
        ours_seconds_per_batch=statistics.median(r.seconds for r in ours_runs),
        generate_seconds_per_batch=statistics.median(r.seconds for r in anchor_runs),
        ours_mean_new_tokens=sum(r.new_tokens for r in ours_runs) / rows,
        generate_mean_new_tokens=sum(r.new_tokens for r in anchor_runs) / rows,
        ours_runs=tuple(ours_runs),
        generate_runs=tuple(anchor_runs),
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", default="all", help="tiny, smollm2-135m, or all")
    parser.add_argument("--batch", type=int, default=8, help="prompts per batch")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches per side first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="small sizes: " + str(QUICK))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if args.model not in (*MODELS, "all"):
        parser.error(f"--model must be one of {', '.join(MODELS)} or all, got {args.model!r}")
    if min(args.batch, args.max_new_tokens, args.repeats) < 1 or args.warmup < 0:
        parser.error("--batch, --max-new-tokens and --repeats must be >= 1, --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    names = list(MODELS) if args.model == "all" else [args.model]
    results = [bench(name, args) for name in names]
    print(
        f"generation: HFPolicy.sample vs model.generate, batch {args.batch}, "
        f"{args.max_new_tokens} max new tokens, temperature 1.0, median of {args.repeats} "
        f"interleaved repeats after {args.warmup} warm-up, torch threads "
        f"{torch.get_num_threads()}, {platform.processor() or platform.machine()}"
    )
    header = (
        f"{'model':<14}{'ours tok/s':>12}{'generate tok/s':>16}{'ratio':>8}"
        f"{'ours s/batch':>14}{'generate s/batch':>18}{'ours len':>10}{'gen len':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.model:<14}{r.ours_tokens_per_s:>12.1f}{r.generate_tokens_per_s:>16.1f}"
            f"{r.ratio:>7.2f}x{r.ours_seconds_per_batch:>14.3f}"
            f"{r.generate_seconds_per_batch:>18.3f}{r.ours_mean_new_tokens:>10.1f}"
            f"{r.generate_mean_new_tokens:>9.1f}"
        )
    report = {
        "benchmark": "generation_throughput",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch_threads": torch.get_num_threads(),
        "results": [asdict(r) for r in results],
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
