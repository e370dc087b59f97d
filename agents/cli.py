"""``brite-agent``: list environments, run agents, evaluate and compare, configured with Hydra.

    brite-agent list
    brite-agent run [key=value ...]        e.g. brite-agent run env=gsm8k model=tiny
    brite-agent eval [key=value ...]       e.g. brite-agent eval env=[gsm8k,math500] n=4 ...
    brite-agent compare DIR1 DIR2 ... [baseline=LABEL] [out=DIR]
    brite-agent bench [--quick] [--only NAME,...]   the performance suite (benchmarks.perf)

Config groups: ``env/``, ``model/``, ``agent/`` (see ``agents/conf``). A bad override stops
with a one-line error that lists the valid choices.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.errors import AgentError, ConfigError

USAGE = """usage: brite-agent {list,run,eval,compare,bench} [key=value ...]

commands:
  list     every environment with its size, verifier and whether its data is reachable
  run      run an agent (default: env=arith model=smollm2-135m agent=brite); agent=brite, ppo,
           rs, star, sft, dpo, or eval (held-out accuracy only)
  eval     benchmark a model on one or more envs, or grade a completions file with no model:
             brite-agent eval env=math500 model=qwen2.5-1.5b-instruct n=4 temperature=0.6
             brite-agent eval env=[gsm8k,math500] model=tiny out=runs/base label=base
             brite-agent eval env=gsm8k completions=FILE.jsonl out=DIR
           shortcuts: n (samples per problem), temperature, top_p, max_new_tokens, batch_size,
           backend=hf|vllm, completions=FILE (rows: problem_id, completion[, sample_index,
           env]), label, out, resume=true|false (default true: rerunning on the same out
           continues it; false discards its samples and starts over); any other key as in run
           (env.eval_size=100, seed=1, model.name_or_path=DIR, ...). Writes out/run.json,
           out/<env>/samples.jsonl and metrics.json, out/report.md and out/report.html
  compare  a paper-style table of eval directories (accuracy with bootstrap 95% CIs, and the
           difference to a baseline): brite-agent compare DIR1 DIR2 ... [baseline=LABEL]
           [out=DIR] [n_boot=2000] [seed=0]; writes out/compare.md and out/compare.html
  bench    the performance suite: every benchmark beside its anchor (raw loop, math-verify,
           evalplus, TRL GRPO, model.generate) in one run, into docs/PERFORMANCE.md; takes
           python -m benchmarks.perf's flags (--quick, --only NAME,..., --out FILE, --help)

config groups (choose with group=name): env, model, agent; any key can be overridden,
e.g. brite-agent run env=gsm8k env.eval_size=100 agent.max_new_tokens=512
"""

GROUPS = ("env", "model", "agent")


def run_eval_agent(cfg: Any) -> int:
    return run_eval(cfg)


AGENTS: dict[str, Callable[[Any], int] | str] = {
    "eval": run_eval_agent,
    "brite": "agents.brite:run_brite",
    "ppo": "agents.brite:run_ppo",
    "rs": "agents.baselines:run_rs",
    "star": "agents.baselines:run_star",
    "sft": "agents.baselines:run_sft",
    "dpo": "agents.baselines:run_dpo",
}
"""What ``agent.name`` runs: a function of the composed config returning an exit code
(``"module:function"`` strings are imported on use, so ``list`` does not import torch)."""


def _choices(group: str) -> list[str]:
    from importlib.resources import files

    folder = files("agents.conf") / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def compose(overrides: Sequence[str]) -> Any:
    """The Hydra config with ``overrides``, or ConfigError naming the valid choices."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not key=value; e.g. env=gsm8k")
        if key in GROUPS:
            value = o.split("=", 1)[1]
            valid = _choices(key)
            if value not in valid:
                raise ConfigError(
                    f"{key}={value!r} is not a known {key}; valid choices: {', '.join(valid)}"
                )
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="agents.conf", version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0]
        if first.startswith("Could not override"):
            first += " It is not in the config: add it with +key=value"
        raise ConfigError(
            f"bad override ({first}); groups are {', '.join(GROUPS)}, top-level keys are "
            "seed, out, and env.*/model.*/agent.* keys (see `brite-agent run --cfg`)"
        ) from exc
    return cfg


def cmd_list() -> int:
    """Print every registered env: alias, Gymnasium id, verifier, size, data location."""
    from rich.console import Console
    from rich.table import Table

    import brite_envs
    from brite_envs.errors import BriteEnvError

    table = Table(title="brite environments")
    for col in ("alias", "gym id", "verifier", "size", "data"):
        table.add_column(col, overflow="fold")
    for spec in brite_envs.list_tasks():
        task = brite_envs.make_task(spec.name)
        where = task.data_location()
        size = "-"
        if where == "builtin" or where.startswith("local:"):
            try:
                size = str(len(task))
            except BriteEnvError as exc:
                where = f"error: {exc}"
        elif where.startswith("hub:"):
            size = "? (hub)"
        table.add_row(spec.name, spec.gym_id, spec.verifier, size, where)
    Console(width=160).print(table)
    return 0


def cmd_run(overrides: Sequence[str]) -> int:
    from omegaconf import OmegaConf

    if "--cfg" in overrides:
        print(OmegaConf.to_yaml(compose([o for o in overrides if o != "--cfg"])))
        return 0
    cfg = compose(overrides)
    runner = AGENTS.get(str(cfg.agent.name))
    if runner is None:
        raise ConfigError(
            f"agent.name={cfg.agent.name!r} has no runner; valid: {', '.join(sorted(AGENTS))}"
        )
    if isinstance(runner, str):
        module, attr = runner.split(":")
        runner = getattr(importlib.import_module(module), attr)
    return runner(cfg)


def run_eval(cfg: Any) -> int:
    """``run agent=eval``: one env's held-out problems, with samples.jsonl and metrics.json
    written straight into ``out`` (``brite-agent eval`` is the full harness: several envs,
    resume, completions files, reports)."""
    from agents.evaluate import EvalPlan, evaluate
    from agents.models import load_model

    plan = EvalPlan.from_cfgs([cfg], out=str(cfg.out))
    if plan.backend != "hf" or plan.model is None:
        raise ConfigError(
            "run agent=eval samples with the HF backend; for backend=vllm use "
            "`brite-agent eval backend=vllm ...`"
        )
    selection = plan.envs[0]
    task = selection.make_task()
    size = len(task) if selection.size is None else min(selection.size, len(task))
    print(f"loading model {plan.model.name} ...", file=sys.stderr)
    model, tokenizer = load_model(plan.model, seed=plan.sampling.seed)
    out = plan.out
    summary = evaluate(
        model,
        tokenizer,
        task,
        list(range(size)),
        plan.sampling,
        out_dir=out,
        env=selection.name,
        progress=plan.progress,
    )
    print(json.dumps({k: v for k, v in summary.to_dict().items() if k != "metrics"}, indent=2))
    print(
        f"{task.name} ({selection.split}, {summary.n} samples): accuracy "
        f"{summary.accuracy:.3f}  statuses {summary.status_counts}  -> {out}/samples.jsonl"
    )
    return 0


# -- brite-agent eval -------------------------------------------------------------------------
EVAL_SHORTCUTS = {
    "n": "agent.n",
    "temperature": "agent.temperature",
    "top_p": "agent.top_p",
    "max_new_tokens": "agent.max_new_tokens",
    "batch_size": "agent.batch_size",
    "backend": "agent.backend",
}
"""``brite-agent eval`` keys that stand for ``agent.*`` keys of agent=eval."""
EVAL_OWN = ("env", "out", "label", "completions", "resume")
"""Keys ``brite-agent eval`` reads itself (not through Hydra: lists, paths, free text)."""
SAMPLING_ONLY = ("n", "temperature", "top_p", "max_new_tokens", "backend")
"""Settings of sampling from a model, meaningless when grading a completions file."""


@dataclass(frozen=True)
class EvalArgs:
    """The command line of ``brite-agent eval``, split into what Hydra composes and the rest."""

    envs: tuple[str, ...]
    """Env aliases (empty: the config's default env)."""
    overrides: tuple[str, ...]
    out: str | None = None
    label: str | None = None
    completions: str | None = None
    resume: bool = True
    sampling_given: tuple[str, ...] = ()
    """Sampling keys given on the command line (an error with completions=)."""
    show_cfg: bool = False


def parse_env_list(value: str) -> tuple[str, ...]:
    """``gsm8k``, ``[gsm8k,math500]`` or ``gsm8k,math500`` as env aliases, each checked."""
    text = value.strip()
    if text.startswith("[") != text.endswith("]"):
        raise ConfigError(f"env={value!r} is not a list; write env=[gsm8k,math500] or env=gsm8k")
    if text.startswith("["):
        text = text[1:-1]
    names = tuple(part.strip().strip("'\"") for part in text.split(","))
    valid = _choices("env")
    for name in names:
        if name not in valid:
            raise ConfigError(f"env={name!r} is not a known env; valid choices: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"env={value!r} names an env twice")
    return names


def parse_eval_args(args: Sequence[str]) -> EvalArgs:
    """Split ``brite-agent eval`` arguments; ConfigError for anything malformed."""
    envs: tuple[str, ...] = ()
    own: dict[str, str] = {}
    overrides: list[str] = []
    given: list[str] = []
    show_cfg = False
    for arg in args:
        if arg == "--cfg":
            show_cfg = True
            continue
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not key=value; e.g. env=gsm8k or n=4")
        key, value = arg.split("=", 1)
        bare = key.lstrip("+~")
        if bare == "agent":
            raise ConfigError(
                f"eval always uses agent=eval; drop {arg!r} (training agents: brite-agent run)"
            )
        if bare in EVAL_OWN:
            if bare in own or (bare == "env" and envs):
                raise ConfigError(f"{bare}= is given twice")
            if bare == "env":
                envs = parse_env_list(value)
            else:
                own[bare] = value
            continue
        if bare in EVAL_SHORTCUTS:
            given.append(bare)
            overrides.append(f"{EVAL_SHORTCUTS[bare]}={value}")
            continue
        if bare.startswith("agent.") and bare[len("agent.") :] in SAMPLING_ONLY:
            given.append(bare[len("agent.") :])
        overrides.append(arg)
    resume_text = own.get("resume", "true").strip().lower()
    if resume_text not in ("true", "false"):
        raise ConfigError(f"resume must be true or false, got {own['resume']!r}")
    completions = own.get("completions")
    if completions is not None and given:
        raise ConfigError(
            f"{given[0]}= does not apply to completions=FILE: the file holds the samples "
            "(no model samples); drop it"
        )
    return EvalArgs(
        envs=envs,
        overrides=tuple(overrides),
        out=own.get("out"),
        label=own.get("label"),
        completions=completions,
        resume=resume_text == "true",
        sampling_given=tuple(given),
        show_cfg=show_cfg,
    )


def cmd_eval(args: Sequence[str]) -> int:
    """Compose one config per env, run the eval, and print the summary table."""
    from agents.evaluate import EvalPlan, run_eval

    parsed = parse_eval_args(args)
    envs = parsed.envs or (None,)
    cfgs = [compose([*([f"env={e}"] if e else []), "agent=eval", *parsed.overrides]) for e in envs]
    plan = EvalPlan.from_cfgs(
        cfgs,
        out=parsed.out,
        label=parsed.label,
        completions=parsed.completions,
        resume=parsed.resume,
    )
    if parsed.show_cfg:
        info = {"out": str(plan.out), "label": plan.label, "resume": plan.resume}
        print(json.dumps({**info, "config": plan.recorded_config()}, indent=2))
        return 0
    result = run_eval(plan)
    print_eval_summary(result)
    return 0


def print_eval_summary(result: Any) -> None:
    """A table of every env's headline metrics, then where the files are."""
    from rich.console import Console
    from rich.table import Table

    from verifiers.base import Status

    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    table = Table(title=f"eval {result.label} (percent)")
    columns = ["env", "problems", "n", "accuracy", "pass@1", "pass@n", "maj@n"]
    columns += [s.value for s in Status] + ["mean tokens", "gen s", "verify s", "resumed"]
    for col in columns:
        table.add_column(col, overflow="fold", justify="left" if col == "env" else "right")
    for r in result.envs:
        m = r.metrics
        tokens = "-" if m.mean_completion_tokens is None else f"{m.mean_completion_tokens:.1f}"
        table.add_row(
            r.env,
            str(m.problems),
            str(m.n),
            pct(m.accuracy),
            pct(m.pass_at_k[1]),
            pct(m.pass_at_k[m.n]),
            pct(m.maj_at_k[m.n]),
            *(str(m.status_counts.get(s.value, 0)) for s in Status),
            tokens,
            f"{m.timing.generation_s:.1f}",
            f"{m.timing.verification_s:.1f}",
            str(r.resumed),
        )
    console = Console(width=160)
    console.print(table)
    for r in result.envs:
        console.print(f"{r.env}: {r.samples_path}  {r.metrics_path}", soft_wrap=True)
    console.print(f"report: {result.report_md}  {result.report_html}", soft_wrap=True)


# -- brite-agent compare ----------------------------------------------------------------------
COMPARE_KEYS = ("baseline", "out", "n_boot", "seed")
DEFAULT_COMPARE_OUT = "runs/compare"


def cmd_compare(args: Sequence[str]) -> int:
    """Compare eval directories; print the Markdown table and write it with its HTML twin."""
    dirs: list[Path] = []
    opts: dict[str, str] = {}
    for arg in args:
        if "=" not in arg:
            dirs.append(Path(arg).expanduser())
            continue
        key, value = arg.split("=", 1)
        if key not in COMPARE_KEYS:
            raise ConfigError(
                f"compare takes eval directories and {', '.join(k + '=' for k in COMPARE_KEYS)};"
                f" got {arg!r}"
            )
        opts[key] = value
    if not dirs:
        raise ConfigError(
            "compare needs eval directories: brite-agent compare DIR1 DIR2 ... [baseline=LABEL]"
        )
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(
                f"{d} is not a directory; pass eval directories written by brite-agent eval "
                "(its out=)"
            )
    numbers: dict[str, int] = {}
    for key, default, minimum in (("n_boot", 2000, 1), ("seed", 0, 0)):
        text = opts.get(key, str(default))
        try:
            numbers[key] = int(text)
        except ValueError:
            raise ConfigError(f"{key} must be an integer >= {minimum}, got {text!r}") from None
        if numbers[key] < minimum:
            raise ConfigError(f"{key} must be >= {minimum}, got {numbers[key]}")
    from agents.compare import compare, write_comparison

    try:
        comparison = compare(
            dirs, baseline=opts.get("baseline"), n_boot=numbers["n_boot"], seed=numbers["seed"]
        )
    except AgentError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    md, html = write_comparison(comparison, Path(opts.get("out", DEFAULT_COMPARE_OUT)))
    print(md.read_text(encoding="utf-8"))
    print(f"-> {md}\n-> {html}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    try:
        if command == "list":
            if rest:
                raise ConfigError(f"'list' takes no arguments, got {rest}")
            return cmd_list()
        if command == "run":
            return cmd_run(rest)
        if command == "eval":
            return cmd_eval(rest)
        if command == "compare":
            return cmd_compare(rest)
        if command == "bench":
            from benchmarks.perf import main as perf_main

            return perf_main(rest)
        raise ConfigError(
            f"unknown command {command!r}; valid commands: list, run, eval, compare, bench"
        )
    except AgentError as exc:
        print(f"brite-agent: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a library error: one line, named, no traceback wall
        from brite_envs.errors import BriteEnvError

        if isinstance(exc, BriteEnvError):
            print(f"brite-agent: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
