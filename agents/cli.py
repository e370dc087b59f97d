"""``brite-agent``: list environments and run agents, configured with Hydra.

    brite-agent list
    brite-agent run [key=value ...]        e.g. brite-agent run env=gsm8k model=tiny

Config groups: ``env/``, ``model/``, ``agent/`` (see ``agents/conf``). A bad override stops
with a one-line error that lists the valid choices.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.errors import AgentError, ConfigError

USAGE = """usage: brite-agent {list,run} [key=value ...]

commands:
  list    every environment with its size, verifier and whether its data is reachable
  run     run the configured agent (default: env=arith model=smollm2-135m agent=eval)

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
    """Evaluate the model on the env's held-out problems and print accuracy by status."""
    import brite_envs
    from agents.evaluate import EvalConfig, evaluate
    from agents.models import ModelSpec, load_model

    try:
        task = brite_envs.make_task(
            cfg.env.name, split=cfg.env.eval_split, **dict(cfg.env.task_kwargs or {})
        )
        n = len(task)
    except brite_envs.BriteEnvError as exc:
        raise ConfigError(str(exc)) from exc
    size = n if cfg.env.eval_size is None else min(int(cfg.env.eval_size), n)
    try:
        spec = ModelSpec(
            **{k: cfg.model[k] for k in ("name", "source", "name_or_path", "gguf_file", "dtype")}
        )
        eval_cfg = EvalConfig(
            batch_size=int(cfg.agent.batch_size),
            max_new_tokens=int(cfg.agent.max_new_tokens),
            temperature=float(cfg.agent.temperature),
            seed=int(cfg.seed),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    print(f"loading model {spec.name} ...", file=sys.stderr)
    model, tokenizer = load_model(spec, seed=int(cfg.seed))
    out = Path(cfg.out)
    summary = evaluate(model, tokenizer, task, list(range(size)), eval_cfg, out_dir=out)
    print(json.dumps(summary.to_dict(), indent=2))
    print(
        f"{task.name} ({cfg.env.eval_split}, {summary.n} problems): accuracy "
        f"{summary.accuracy:.3f}  statuses {summary.status_counts}  -> {out}/samples.jsonl"
    )
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
        raise ConfigError(f"unknown command {command!r}; valid commands: list, run")
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
