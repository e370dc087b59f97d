"""A bridge from verifiers to TRL: ``as_trl_reward`` makes a reward function for
``GRPOTrainer(reward_funcs=[...])``.

TRL (1.16) calls each reward function once per generation batch as
``reward_func(prompts=..., completions=..., completion_ids=..., **reward_kwargs)``, where
``reward_kwargs`` holds every extra dataset column as a list (one value per completion) plus
``trainer_state``, ``log_extra`` and ``log_metric`` (and ``environments`` with an environment
factory). Completions are strings for plain-text prompts, or lists of message dicts
(``[{"role": "assistant", "content": ...}]``) for conversational ones. It uses the callable's
``__name__`` in its logs (``rewards/<name>/mean``).

Grading failures are not wrong answers. TRL 1.16 accepts ``None`` in the returned list and
turns it into NaN: that sample is left out of this reward function's mean and std, and when
every reward function returned None for a completion it is "unscorable": excluded from its
group's baseline and given advantage 0, so it does not move the policy. That is what a
timeout or a grading error should do, so by default those samples get ``None``. Set
``failure_reward`` to a number to score them instead (TRL versions older than the None
support need this). With several reward functions, note that TRL sums rewards with
``nansum``: a None from this one then counts as 0 within the sum of the others.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from verifiers.base import Status, Verdict, Verifier
from verifiers.errors import VerifierConfigError

__all__ = ["TRLReward", "TRLRewardConfig", "as_trl_reward", "completion_text"]

# Keyword arguments GRPOTrainer adds on top of the dataset's columns.
TRL_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "environments"})


@dataclass(frozen=True)
class TRLRewardConfig:
    """Options of :class:`TRLReward`.

    reference_column: dataset column holding the reference answer of each prompt.
    failure_reward: reward of a completion whose grading timed out or failed; None (the
        default) leaves it unscored (see the module docstring).
    name: the reward function's ``__name__``, which TRL logs (None: the verifier's name).
    log_statuses: report the fraction of each verdict status through TRL's ``log_metric``
        (``verdicts/<name>/<status>``) and the statuses as a completions-table column.
    """

    reference_column: str = "reference"
    failure_reward: float | None = None
    name: str | None = None
    log_statuses: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.reference_column, str) or not self.reference_column:
            raise VerifierConfigError(
                f"reference_column must be a non-empty str, got {self.reference_column!r}"
            )
        if self.failure_reward is not None and (
            isinstance(self.failure_reward, bool)
            or not isinstance(self.failure_reward, (int, float))
            or not math.isfinite(self.failure_reward)
        ):
            raise VerifierConfigError(
                f"failure_reward must be a finite number or None, got {self.failure_reward!r}"
            )
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise VerifierConfigError(f"name must be a non-empty str or None, got {self.name!r}")
        if not isinstance(self.log_statuses, bool):
            raise VerifierConfigError(f"log_statuses must be a bool, got {self.log_statuses!r}")


def _text_of(content: Any) -> str | None:
    """Text of a message's content: a string, or multimodal blocks' ``text`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b.get("text") for b in content if isinstance(b, Mapping)]
        return "".join(p for p in parts if isinstance(p, str))
    return None


def completion_text(completion: Any) -> str | None:
    """The text to grade in one TRL completion: the string itself, or the content of the
    last assistant message of a conversational completion (after any tool turns). None
    when the completion has neither shape."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, list) and all(isinstance(m, Mapping) for m in completion):
        replies = [m for m in completion if m.get("role", "assistant") == "assistant"]
        if not replies:
            return None
        texts = [_text_of(m.get("content")) for m in replies]
        with_text = [t for t in texts if t]
        if with_text:
            return with_text[-1]
        return "" if all(t is not None for t in texts) else None
    return None


class TRLReward:
    """A verifier as a TRL reward function; build it with :func:`as_trl_reward`.

    ``last_verdicts`` and ``last_status_counts`` describe the latest batch and
    ``status_counts`` every batch so far, so timeouts and errors can be logged apart from
    wrong answers.
    """

    def __init__(
        self, verifier: Verifier, config: TRLRewardConfig, *, owns_verifier: bool = False
    ) -> None:
        if not isinstance(verifier, Verifier):
            raise VerifierConfigError(f"expected a Verifier, got {type(verifier).__name__}")
        self.verifier = verifier
        self.config = config
        self._owns_verifier = owns_verifier
        self.__name__ = config.name or verifier.name
        self.last_verdicts: list[Verdict] = []
        self.last_status_counts: dict[str, int] = {s.value: 0 for s in Status}
        self.status_counts: collections.Counter[str] = collections.Counter()

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        """One reward per completion, in order; None marks a grading failure (by default)."""
        if completions is None:
            raise TypeError(f"reward {self.__name__!r} needs completions=")
        completions = list(completions)
        references = self._references(kwargs, len(completions))
        texts = [completion_text(c) for c in completions]
        todo = [i for i, t in enumerate(texts) if t is not None]
        graded = self.verifier.verify_many(
            [texts[i] for i in todo],  # type: ignore[misc]
            [references[i] for i in todo],
        )
        verdicts: list[Verdict] = [
            Verdict(
                0.0,
                Status.ERROR,
                None,
                f"unrecognised completion format: {type(c).__name__} "
                "(expected a str or a list of messages with an assistant reply)",
            )
            for c in completions
        ]
        for i, v in zip(todo, graded, strict=True):
            verdicts[i] = v
        self._record(verdicts, kwargs)
        return [self.config.failure_reward if v.failed_to_grade else v.score for v in verdicts]

    def _references(self, kwargs: Mapping[str, Any], n: int) -> list[Any]:
        col = self.config.reference_column
        if col not in kwargs:
            columns = sorted(k for k in kwargs if k not in TRL_KWARGS)
            raise VerifierConfigError(
                f"reward {self.__name__!r}: the dataset has no {col!r} column (its extra columns "
                f"are {columns}); add the reference answers as a {col!r} column, or pass "
                f"reference_column=<the column's name> to as_trl_reward"
            )
        refs = list(kwargs[col])
        if len(refs) != n:
            raise ValueError(
                f"reward {self.__name__!r}: {n} completions but {len(refs)} values in {col!r}"
            )
        # integer answers are often stored as ints; verifiers compare strings
        return [str(r) if isinstance(r, int) and not isinstance(r, bool) else r for r in refs]

    def _record(self, verdicts: list[Verdict], kwargs: Mapping[str, Any]) -> None:
        counts = collections.Counter(v.status.value for v in verdicts)
        self.last_verdicts = verdicts
        self.last_status_counts = {s.value: counts.get(s.value, 0) for s in Status}
        self.status_counts.update(counts)
        if not self.config.log_statuses or not verdicts:
            return
        log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
        if callable(log_metric):
            for status, count in self.last_status_counts.items():
                log_metric(f"verdicts/{self.__name__}/{status}", count / len(verdicts))
        if callable(log_extra):
            log_extra(f"{self.__name__}/status", [v.status.value for v in verdicts])

    def close(self) -> None:
        """Release the verifier's workers if this reward built it."""
        if self._owns_verifier:
            self.verifier.close()

    def __repr__(self) -> str:
        return f"TRLReward(name={self.__name__!r}, verifier={self.verifier!r})"


def as_trl_reward(
    verifier: Verifier | str,
    *,
    reference_column: str = "reference",
    failure_reward: float | None = None,
    name: str | None = None,
    log_statuses: bool = True,
    **verifier_config: Any,
) -> TRLReward:
    """A reward function for TRL's ``GRPOTrainer(reward_funcs=[...])`` grading with
    ``verifier`` (an instance, or a registered name built with ``verifier_config``).

    Completions are graded in one ``verify_many`` call (parallel where the verifier is).
    Correct/incorrect/unparsable answers get the verdict's score; timeouts and errors get
    ``failure_reward`` (None by default: left unscored; see the module docstring).
    """
    config = TRLRewardConfig(
        reference_column=reference_column,
        failure_reward=failure_reward,
        name=name,
        log_statuses=log_statuses,
    )
    if isinstance(verifier, str):
        import verifiers

        return TRLReward(verifiers.get(verifier, **verifier_config), config, owns_verifier=True)
    if verifier_config:
        raise VerifierConfigError(
            f"options {sorted(verifier_config)} only apply when the verifier is given by name; "
            "configure the Verifier instance instead"
        )
    return TRLReward(verifier, config)
