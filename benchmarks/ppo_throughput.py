"""PPO training throughput against TRL's GRPOTrainer, measured in the same run.

One "update" is a full training step: sample a batch of completions (``prompts x group``),
grade them with the arith verifier, score them under a frozen reference (β = 0.05 on both
sides, so both run a reference forward), and take one optimiser step over the batch. Ours
is ``agents.ppo.PPOTrainer`` (token-mode env, KV-cached sampling loop, value head, GAE);
TRL's is ``GRPOTrainer`` with a ``reward_funcs`` callable (``verifiers.trl.as_trl_reward``)
on the same arith prompts, with the same model, batch, group size, completion budget,
temperature and learning rate. Throughput is tokens (prompt plus completion) per second of
wall time per update, the median over the timed updates after warm-up; completion tokens
per second are reported too. The trainers alternate update by update (ours run between
TRL's steps, outside their timing) so all see the same machine load.

Ours is measured twice: as configured by default (``share_prompts=True``: the ``group``
samples of a problem share one prompt pass in the rollout, the reference and the update)
and with ``share_prompts=False`` (every sample runs its own prompt, as TRL's do), so the
table shows both the total gain and how much of it is prompt sharing.

    python -m benchmarks.ppo_throughput [--model tiny|smollm2-135m|all] [--prompts 2]
        [--group 4] [--max-new-tokens 24] [--steps 3] [--warmup 1] [--threads N] [--quick]
        [--json OUT]
"""

from __future__ import annotations

import argparse
import copy
import importlib.resources
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from agents.models import ModelSpec, load_model
from agents.policy import FrozenReference, PolicyWithValue
from agents.ppo import PPOConfig, PPOTrainer, token_env
from brite_envs.tasks.arith import Arith

QUICK = {"model": "tiny", "prompts": 2, "group": 2, "max_new_tokens": 8, "steps": 1}
"""The ``--quick`` sizes (smoke runs and tests); explicit options still win."""


@dataclass(frozen=True)
class StepTiming:
    """One timed update."""

    seconds: float
    tokens: int
    """Prompt plus completion tokens of the batch."""
    completion_tokens: int


@dataclass(frozen=True)
class Result:
    model: str
    ours_tokens_per_s: float
    trl_tokens_per_s: float
    ratio: float
    ours_unshared_tokens_per_s: float
    """Ours with ``share_prompts=False``: every sample runs its own prompt pass, as TRL's do."""
    unshared_ratio: float
    ours_completion_tokens_per_s: float
    trl_completion_tokens_per_s: float
    ours_mean_completion: float
    trl_mean_completion: float
    ours_seconds_per_update: float
    trl_seconds_per_update: float


def model_spec(name: str) -> ModelSpec:
    """The model preset ``name`` as the CLI reads it (``agents/conf/model/NAME.yaml``)."""
    import yaml

    text = (importlib.resources.files("agents.conf") / "model" / f"{name}.yaml").read_text()
    return ModelSpec(**yaml.safe_load(text))


def _median_rate(timings: list[StepTiming], field: str) -> float:
    return statistics.median(getattr(t, field) / t.seconds for t in timings)


def _batches(args: argparse.Namespace) -> list[list[int]]:
    """Problem indices per update: ``prompts`` new problems, each repeated ``group`` times."""
    return [
        [s * args.prompts + j for j in range(args.prompts) for _ in range(args.group)]
        for s in range(args.warmup + args.steps)
    ]


class Ours:
    """Our PPO trainer, stepped one update at a time."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        task: Arith,
        args: argparse.Namespace,
        *,
        share_prompts: bool,
    ) -> None:
        batch = args.prompts * args.group
        config = PPOConfig(
            max_new_tokens=args.max_new_tokens,
            epochs=1,
            minibatch_size=batch,
            lr=args.lr,
            kl_coef=0.05,
            logprob_batch_size=batch,
            share_prompts=share_prompts,
            seed=0,
        )
        env = token_env(task, tokenizer, config, batch)
        policy = PolicyWithValue(copy.deepcopy(model))
        reference = FrozenReference(copy.deepcopy(model), share_prompts=share_prompts)
        self.trainer = PPOTrainer(policy, env, config, reference=reference)
        self.batches = _batches(args)
        self.timings: list[StepTiming] = []

    def step(self) -> None:
        indices = self.batches[len(self.timings)]
        t0 = time.perf_counter()
        rollout, stats = self.trainer.step(indices)
        seconds = time.perf_counter() - t0
        prompt_tokens = sum(len(p) for p in rollout.prompt_ids)
        self.timings.append(StepTiming(seconds, prompt_tokens + stats.num_tokens, stats.num_tokens))


def run_trl(
    model: Any,
    tokenizer: Any,
    task: Arith,
    args: argparse.Namespace,
    between: Callable[[], None],
) -> list[StepTiming]:
    """TRL's timed steps; ``between`` runs after each one (outside its timing), so the two
    trainers alternate update by update and share whatever load the machine is under."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from verifiers.trl import as_trl_reward

    class Clock(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._t0 = 0.0

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self._t0 = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.seconds.append(time.perf_counter() - self._t0)
            between()

    n_problems = args.prompts * (args.warmup + args.steps)
    rows = [
        {"prompt": task.render_messages(task[i]), "reference": task[i].reference}
        for i in range(n_problems)
    ]
    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        # With beta > 0 TRL loads its reference model from the policy's path, so it gets
        # the same weights as a folder (the policy is loaded from it too).
        folder = f"{out}/model"
        _plain_copy(model).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        trl_args = GRPOConfig(
            output_dir=out,
            max_steps=args.warmup + args.steps,
            per_device_train_batch_size=args.prompts * args.group,
            num_generations=args.group,
            max_completion_length=args.max_new_tokens,
            beta=0.05,
            num_iterations=1,
            learning_rate=args.lr,
            temperature=1.0,
            top_p=1.0,
            shuffle_dataset=False,
            report_to="none",
            use_cpu=True,
            bf16=False,
            logging_steps=1,
            save_strategy="no",
            disable_tqdm=True,
            seed=0,
        )
        trainer = GRPOTrainer(
            model=folder,
            reward_funcs=[as_trl_reward("exact")],
            args=trl_args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # the per-step log dicts
        trainer.train()
    logs = [e for e in trainer.state.log_history if "num_tokens" in e]
    batch = args.prompts * args.group
    timings = []
    seen = 0.0
    for seconds, entry in zip(clock.seconds, logs, strict=True):
        tokens = int(entry["num_tokens"] - seen)
        seen = entry["num_tokens"]
        completion = round(entry["completions/mean_length"] * batch)
        timings.append(StepTiming(seconds, tokens, completion))
    return timings[args.warmup :]


def _plain_copy(model: Any) -> Any:
    """The same weights in a serialisable model (one loaded from GGUF is not)."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=next(model.parameters()).dtype)
    plain.load_state_dict(model.state_dict())
    return plain


def bench(name: str, args: argparse.Namespace) -> Result:
    model, tokenizer = load_model(model_spec(name), seed=0)
    task = Arith(split="train", size=max(64, args.prompts * (args.warmup + args.steps)))
    shared = Ours(model, tokenizer, task, args, share_prompts=True)
    unshared = Ours(model, tokenizer, task, args, share_prompts=False)

    def between() -> None:
        shared.step()
        unshared.step()

    trl = run_trl(model, tokenizer, task, args, between=between)
    ours = shared.timings[args.warmup :]
    plain = unshared.timings[args.warmup :]
    plain_rate = _median_rate(plain, "tokens")
    ours_rate = _median_rate(ours, "tokens")
    trl_rate = _median_rate(trl, "tokens")
    batch = args.prompts * args.group
    return Result(
        model=name,
        ours_tokens_per_s=ours_rate,
        trl_tokens_per_s=trl_rate,
        ratio=ours_rate / trl_rate,
        ours_unshared_tokens_per_s=plain_rate,
        unshared_ratio=plain_rate / trl_rate,
        ours_completion_tokens_per_s=_median_rate(ours, "completion_tokens"),
        trl_completion_tokens_per_s=_median_rate(trl, "completion_tokens"),
        ours_mean_completion=statistics.mean(t.completion_tokens for t in ours) / batch,
        trl_mean_completion=statistics.mean(t.completion_tokens for t in trl) / batch,
        ours_seconds_per_update=statistics.median(t.seconds for t in ours),
        trl_seconds_per_update=statistics.median(t.seconds for t in trl),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny, smollm2-135m, or all")
    parser.add_argument("--prompts", type=int, default=2, help="distinct prompts per update")
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--steps", type=int, default=3, help="timed updates")
    parser.add_argument("--warmup", type=int, default=1, help="untimed updates first")
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="small sizes: " + str(QUICK))
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if args.model not in ("tiny", "smollm2-135m", "all"):
        parser.error(f"--model must be tiny, smollm2-135m or all, got {args.model!r}")
    if min(args.prompts, args.group, args.max_new_tokens, args.steps) < 1 or args.warmup < 0:
        parser.error("--prompts, --group, --max-new-tokens and --steps must be >= 1, --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = ["tiny", "smollm2-135m"] if args.model == "all" else [args.model]
    results = [bench(name, args) for name in names]
    print(
        f"PPO (agents.ppo) vs TRL GRPOTrainer: {args.prompts} prompts x {args.group} "
        f"completions, {args.max_new_tokens} new tokens, {args.steps} timed updates, "
        f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}"
    )
    header = (
        f"{'model':<14}{'ours tok/s':>12}{'TRL tok/s':>12}{'ratio':>8}"
        f"{'unshared tok/s':>16}{'ratio':>8}"
        f"{'ours gen/s':>12}{'TRL gen/s':>12}{'ours len':>10}{'TRL len':>9}"
        f"{'ours s/upd':>12}{'TRL s/upd':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.model:<14}{r.ours_tokens_per_s:>12.1f}{r.trl_tokens_per_s:>12.1f}"
            f"{r.ratio:>7.2f}x{r.ours_unshared_tokens_per_s:>16.1f}{r.unshared_ratio:>7.2f}x"
            f"{r.ours_completion_tokens_per_s:>12.1f}"
            f"{r.trl_completion_tokens_per_s:>12.1f}{r.ours_mean_completion:>10.1f}"
            f"{r.trl_mean_completion:>9.1f}{r.ours_seconds_per_update:>12.2f}"
            f"{r.trl_seconds_per_update:>11.2f}"
        )
    report = {
        "benchmark": "ppo_throughput",
        "args": vars(args),
        "torch_threads": torch.get_num_threads(),
        "results": [asdict(r) for r in results],
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return report


if __name__ == "__main__":
    main()
