"""RayVerifier: ``verify_many`` scaled out across Ray actors (the ``ray`` extra).

Each actor builds its own verifier once (``verifiers.get(name, **config)`` inside the actor),
so expensive set-up (sympy imports, worker pools, sandboxes) happens once per actor, not per
call. A batch is split into contiguous shards, one per actor, and the verdicts come back in
the original order.

Grading failures stay typed verdicts: if an actor dies (killed, out of memory, its node lost)
or does not answer within ``call_timeout_s``, the items it held come back with status
``error`` naming the cause (never ``incorrect``) and the actor is replaced, so the verifier
keeps working. The verifier's own time limits (``timeout_s`` of the math verifier, the code
sandbox's) still apply inside each actor and give ``timeout`` verdicts as usual.

On a remote cluster the brite package must be importable on every node (install it there
or ship it with a Ray ``runtime_env``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from verifiers.base import Status, Verdict, Verifier, check_lengths
from verifiers.errors import VerifierConfigError

__all__ = ["RayConfig", "RayVerifier", "ray_verifier"]

INSTALL_HINT = 'pip install "brite[ray]"'

_init_lock = threading.Lock()
_remote_cls: Any = None


def _import_ray() -> Any:
    """The ``ray`` module, or a VerifierConfigError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise VerifierConfigError(
            f"RayVerifier needs Ray, which is not installed ({e}); install it with `{INSTALL_HINT}`"
        ) from e
    return ray


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class RayConfig:
    """Options of :class:`RayVerifier`.

    verifier: registered name of the verifier each actor builds.
    num_actors: actors a batch is sharded across.
    address: Ray cluster to connect to when Ray is not initialised yet (None: ``RAY_ADDRESS``
        if set, else a new local instance).
    num_cpus_per_actor: CPUs Ray reserves for each actor (0 allowed: schedule anywhere).
    local_num_cpus: CPUs of a local Ray instance started here (None: enough for the actors).
    call_timeout_s: most seconds to wait for one batch (None: no limit; the verifier's own
        per-item limits still apply). Past it the shard's items are ``error`` verdicts.
    start_timeout_s: most seconds to wait for the actors to start and build their verifier.
    verifier_config: keyword options passed to ``verifiers.get`` inside each actor.
    """

    verifier: str
    num_actors: int = 2
    address: str | None = None
    num_cpus_per_actor: float = 1.0
    local_num_cpus: int | None = None
    call_timeout_s: float | None = None
    start_timeout_s: float = 120.0
    verifier_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.verifier, str) or not self.verifier:
            raise VerifierConfigError(
                f"RayConfig.verifier must be a non-empty verifier name, got {self.verifier!r}"
            )
        if self.verifier == "ray":
            raise VerifierConfigError("RayConfig.verifier cannot be 'ray' itself")
        if (
            isinstance(self.num_actors, bool)
            or not isinstance(self.num_actors, int)
            or self.num_actors < 1
        ):
            raise VerifierConfigError(
                f"RayConfig.num_actors must be an int >= 1, got {self.num_actors!r}"
            )
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise VerifierConfigError(
                f"RayConfig.address must be a non-empty str or None, got {self.address!r}"
            )
        if not _is_number(self.num_cpus_per_actor) or self.num_cpus_per_actor < 0:
            raise VerifierConfigError(
                f"RayConfig.num_cpus_per_actor must be a number >= 0, got "
                f"{self.num_cpus_per_actor!r}"
            )
        if self.local_num_cpus is not None and (
            isinstance(self.local_num_cpus, bool)
            or not isinstance(self.local_num_cpus, int)
            or self.local_num_cpus < 1
        ):
            raise VerifierConfigError(
                f"RayConfig.local_num_cpus must be an int >= 1 or None, got {self.local_num_cpus!r}"
            )
        if self.call_timeout_s is not None and (
            not _is_number(self.call_timeout_s) or self.call_timeout_s <= 0
        ):
            raise VerifierConfigError(
                f"RayConfig.call_timeout_s must be a number > 0 or None, got "
                f"{self.call_timeout_s!r}"
            )
        if not _is_number(self.start_timeout_s) or self.start_timeout_s <= 0:
            raise VerifierConfigError(
                f"RayConfig.start_timeout_s must be a number > 0, got {self.start_timeout_s!r}"
            )
        if not isinstance(self.verifier_config, Mapping) or not all(
            isinstance(k, str) for k in self.verifier_config
        ):
            raise VerifierConfigError(
                f"RayConfig.verifier_config must be a mapping with str keys, got "
                f"{self.verifier_config!r}"
            )
        # frozen all the way down: a later change to the caller's dict must not leak in
        object.__setattr__(self, "verifier_config", MappingProxyType(dict(self.verifier_config)))


class _VerifierActor:
    """The body of one Ray actor: builds its verifier once and grades shards with it."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        import verifiers

        self.verifier = verifiers.get(name, **config)

    def ping(self) -> tuple[str, int]:
        return self.verifier.name, os.getpid()

    def verify_many(
        self, completions: list[Any], references: list[Any], questions: list[Any] | None
    ) -> list[Verdict]:
        t0 = time.perf_counter()
        try:
            return self.verifier.verify_many(completions, references, questions=questions)
        except Exception as e:  # a bug of the verifier, never the completion's fault
            reason = f"verifier raised in the Ray actor: {type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            return [Verdict(0.0, Status.ERROR, None, reason, dt) for _ in completions]

    def close(self) -> None:
        self.verifier.close()


def _actor_class(ray: Any) -> Any:
    global _remote_cls
    if _remote_cls is None:
        _remote_cls = ray.remote(max_restarts=0)(_VerifierActor)
    return _remote_cls


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _describe(e: BaseException, limit: int = 400) -> str:
    """A one-line cause from a Ray exception: Ray's messages span many lines (tracebacks,
    actor ids); the first line says what happened and the last one why."""
    lines = [ln.strip() for ln in _ANSI.sub("", str(e)).splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    first, last = lines[0], lines[-1]
    if len(first) > 120:
        first = first[:117] + "..."
    text = last if len(lines) == 1 else f"{first} {last}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shards(n: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous, near-equal [lo, hi) ranges covering range(n); empty ones are dropped."""
    size, extra = divmod(n, parts)
    out: list[tuple[int, int]] = []
    lo = 0
    for i in range(parts):
        hi = lo + size + (1 if i < extra else 0)
        if hi > lo:
            out.append((lo, hi))
        lo = hi
    return out


class RayVerifier(Verifier):
    """Grades through any registered verifier running in Ray actors.

    ``RayVerifier("math", num_actors=4, timeout_s=2.0)``: options other than the Ray ones
    are the inner verifier's. Ray is initialised here only if it is not already
    (``ray.init(address=...)``); :meth:`close` kills the actors but leaves Ray running, and
    a later call starts fresh actors.
    """

    name = "ray"

    def __init__(
        self,
        verifier_name: str,
        *,
        num_actors: int = 2,
        address: str | None = None,
        num_cpus_per_actor: float = 1.0,
        local_num_cpus: int | None = None,
        call_timeout_s: float | None = None,
        start_timeout_s: float = 120.0,
        **config: Any,
    ) -> None:
        cfg = RayConfig(
            verifier=verifier_name,
            num_actors=num_actors,
            address=address,
            num_cpus_per_actor=num_cpus_per_actor,
            local_num_cpus=local_num_cpus,
            call_timeout_s=call_timeout_s,
            start_timeout_s=start_timeout_s,
            verifier_config=config,
        )
        self._setup(cfg)

    @classmethod
    def from_config(cls, config: RayConfig) -> RayVerifier:
        """Build from a ready-made :class:`RayConfig`."""
        if not isinstance(config, RayConfig):
            raise VerifierConfigError(f"config must be a RayConfig, got {type(config).__name__}")
        self = cls.__new__(cls)
        self._setup(config)
        return self

    def _setup(self, config: RayConfig) -> None:
        self.config = config
        self._ray = _import_ray()
        self._lock = threading.Lock()
        self._actors: list[Any] = []
        self._starting: list[Any] = []  # ping refs of replacement actors still starting
        self._turn = 0
        self.replaced = 0  # actors replaced after dying or hanging, for monitoring
        self.inner_name = config.verifier
        self._actors = self._start_actors()

    # ------------------------------------------------------------------ actors

    def _ensure_ray(self) -> None:
        ray = self._ray
        with _init_lock:
            if ray.is_initialized():
                return
            kwargs: dict[str, Any] = {
                "address": self.config.address,
                "ignore_reinit_error": True,
                "log_to_driver": False,
            }
            if self.config.address is None and not os.environ.get("RAY_ADDRESS"):
                # starting a local instance: these options are refused when connecting
                wanted = self.config.num_actors * self.config.num_cpus_per_actor
                kwargs["num_cpus"] = self.config.local_num_cpus or max(1, math.ceil(wanted))
                kwargs["include_dashboard"] = False
            try:
                ray.init(**kwargs)
            except Exception as e:
                where = self.config.address or os.environ.get("RAY_ADDRESS") or "a local instance"
                raise VerifierConfigError(
                    f"could not start or connect to Ray ({where}): {_describe(e)}"
                ) from e

    def _spawn(self) -> Any:
        cls = _actor_class(self._ray).options(num_cpus=self.config.num_cpus_per_actor)
        return cls.remote(self.config.verifier, dict(self.config.verifier_config))

    def _start_actors(self) -> list[Any]:
        """Start every actor and wait until each has built its verifier: a bad name or
        option is a VerifierConfigError here, not a batch of error verdicts later."""
        ray = self._ray
        self._ensure_ray()
        actors = [self._spawn() for _ in range(self.config.num_actors)]
        try:
            ray.get([a.ping.remote() for a in actors], timeout=self.config.start_timeout_s)
        except Exception as e:
            for a in actors:
                with contextlib.suppress(Exception):
                    ray.kill(a, no_restart=True)
            if isinstance(e, ray.exceptions.GetTimeoutError):
                free: object = "?"
                with contextlib.suppress(Exception):
                    free = f"{ray.available_resources().get('CPU', 0):g}"
                raise VerifierConfigError(
                    f"{self.config.num_actors} Ray actor(s) for verifier "
                    f"{self.config.verifier!r} did not start in {self.config.start_timeout_s:g}s; "
                    f"each needs {self.config.num_cpus_per_actor:g} CPU(s), the cluster has "
                    f"{free} free"
                ) from e
            raise VerifierConfigError(
                f"could not build verifier {self.config.verifier!r} in a Ray actor: {_describe(e)}"
            ) from e
        return actors

    @property
    def actors(self) -> list[Any]:
        """Handles of the current actors (a copy; slots change when one is replaced)."""
        with self._lock:
            return list(self._actors)

    def _replace(self, slot: int, dead: Any) -> None:
        """Kill a dead or hung actor and start another in its slot. If that fails too (Ray
        gone), the slot keeps the dead handle: the next call errors and tries again."""
        with self._lock:
            if slot >= len(self._actors) or self._actors[slot] is not dead:
                return  # closed, or already replaced by another thread
            with contextlib.suppress(Exception):
                self._ray.kill(dead, no_restart=True)
            try:
                self._ensure_ray()
                actor = self._spawn()
                self._actors[slot] = actor
                self._starting.append(actor.ping.remote())
            except Exception:
                return
            self.replaced += 1

    def _await_started(self) -> None:
        """Wait (up to ``start_timeout_s``) for replacement actors to finish starting, so a
        new actor's start-up (importing its verifier) is never charged to a call's timeout.
        One that does not start in time is left to fail the call and be replaced again."""
        with self._lock:
            pending, self._starting = self._starting, []
        if pending:
            with contextlib.suppress(Exception):
                self._ray.wait(
                    pending, num_returns=len(pending), timeout=self.config.start_timeout_s
                )

    def _ordered_actors(self) -> list[tuple[int, Any]]:
        """The actors starting at a rotating slot, so small batches spread across them."""
        with self._lock:
            if not self._actors:  # closed: start afresh
                self._actors = self._start_actors()
            k = len(self._actors)
            start, self._turn = self._turn % k, self._turn + 1
            return [((start + i) % k, self._actors[(start + i) % k]) for i in range(k)]

    def close(self) -> None:
        """Close each actor's verifier (its worker pools), then kill the actors."""
        with self._lock:
            actors, self._actors = self._actors, []
        if not actors:
            return
        ray = self._ray
        with contextlib.suppress(Exception):
            ray.wait([a.close.remote() for a in actors], num_returns=len(actors), timeout=10.0)
        for a in actors:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)

    def __enter__(self) -> RayVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ grading

    def verify(self, completion: str, reference: str, *, question: str | None = None) -> Verdict:
        return self.verify_many([completion], [reference], questions=[question])[0]

    def verify_many(
        self,
        completions: Sequence[str],
        references: Sequence[str],
        *,
        questions: Sequence[str | None] | None = None,
    ) -> list[Verdict]:
        """Shard across the actors, keeping the order; failures of Ray are error verdicts."""
        check_lengths(completions, references, questions)
        n = len(completions)
        if n == 0:
            return []
        self._await_started()
        t0 = time.perf_counter()
        actors = self._ordered_actors()
        calls: list[tuple[int, Any, int, int, Any]] = []
        for (slot, actor), (lo, hi) in zip(actors, _shards(n, len(actors)), strict=False):
            try:
                qs = None if questions is None else list(questions[lo:hi])
                ref = actor.verify_many.remote(
                    list(completions[lo:hi]), list(references[lo:hi]), qs
                )
            except Exception as e:  # Ray shut down under us, an unserialisable item, ...
                ref = e
            calls.append((slot, actor, lo, hi, ref))
        deadline = None if self.config.call_timeout_s is None else t0 + self.config.call_timeout_s
        out: list[Verdict | None] = [None] * n
        for slot, actor, lo, hi, ref in calls:
            timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
            got, reason, replace = self._collect(ref, hi - lo, timeout)
            if replace:
                self._replace(slot, actor)
            if got is not None:
                out[lo:hi] = got
            else:
                dt = time.perf_counter() - t0
                out[lo:hi] = [Verdict(0.0, Status.ERROR, None, reason, dt)] * (hi - lo)
        return [v for v in out if v is not None]

    def _collect(
        self, ref: Any, n: int, timeout: float | None
    ) -> tuple[list[Verdict] | None, str, bool]:
        """(verdicts or None, why not, whether the actor must be replaced) for one shard."""
        ray = self._ray
        if isinstance(ref, Exception):
            return None, f"could not send the batch to a Ray actor: {_describe(ref)}", True
        try:
            got = ray.get(ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            return None, f"Ray actor did not answer in {self.config.call_timeout_s:g}s", True
        except ray.exceptions.RayActorError as e:
            return None, f"Ray actor died: {_describe(e)}", True
        except ray.exceptions.RayTaskError as e:  # the actor lives; only this call failed
            return None, f"Ray task failed: {_describe(e)}", False
        except ray.exceptions.RayError as e:
            return None, f"Ray error: {type(e).__name__}: {_describe(e)}", True
        if isinstance(got, list) and len(got) == n and all(isinstance(v, Verdict) for v in got):
            return got, "", False
        return None, f"Ray actor returned {type(got).__name__}, not {n} verdicts", False

    def __repr__(self) -> str:
        return (
            f"RayVerifier({self.config.verifier!r}, num_actors={self.config.num_actors}, "
            f"config={dict(self.config.verifier_config)!r})"
        )


def ray_verifier(verifier: str, **options: Any) -> RayVerifier:
    """Registry factory: ``verifiers.get("ray", verifier="math", num_actors=2, timeout_s=2)``."""
    return RayVerifier(verifier, **options)
