"""The θ-update of BRiTE (and the SFT / DPO steps of the baselines) on TRL, fed exact token ids.

Why exact ids: the thinking policy's samples are token sequences. Decoding them to text and
tokenizing again can give other ids (BPE merges across the old token boundaries), so the model
would be trained on sequences it never produced. Examples therefore carry ids and reach TRL
already tokenized:

- :func:`sft` gives ``SFTTrainer`` ``input_ids`` + ``completion_mask`` columns. TRL 1.16 treats a
  dataset with an ``input_ids`` column as processed (``is_processed``), skips tokenization, and
  turns ``completion_mask`` into ``labels`` (-100 on the prompt) when ``completion_only_loss``.
- :func:`dpo` gives ``DPOTrainer`` ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` columns,
  the exact input of TRL's ``DataCollatorForPreference``. TRL 1.16's ``DPOTrainer`` always
  tokenizes text in ``_prepare_dataset`` (it has no processed-dataset check), so a subclass
  overrides that one method to pass the id columns through untouched.

Text examples (human rationales for the SFT baseline) are tokenized once, here, by
:func:`text_example` / :func:`text_pair`, the same way :func:`agents.generate.generate` encodes
prompts.

Side effects of the HF Trainer worth knowing: it reseeds the global Python/NumPy/torch RNGs
with ``settings.seed``, and DPO (``disable_dropout``) sets the model's dropout to 0. The model
is trained in place and returned in eval mode; TRL's forward patch is undone.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from agents.errors import ConfigError
from agents.generate import encode_prompt as _encode_prompt
from brite_envs.types import ChatMessage

log = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]
Scheduler = Literal["linear", "constant", "constant_with_warmup", "cosine"]
DPOLoss = Literal["sigmoid", "hinge", "ipo"]
LogFn = Callable[[int, Mapping[str, float]], None]
"""Called with (optimizer step, numeric TRL logs) at every logging step."""

_PRECISIONS = ("auto", "float32", "bfloat16", "float16")
_DEVICES = ("auto", "cpu", "cuda")
_SCHEDULERS = ("linear", "constant", "constant_with_warmup", "cosine")
_DPO_LOSSES = ("sigmoid", "hinge", "ipo")


# -- examples ------------------------------------------------------------------------------
def _ids(value: Sequence[int], field: str, *, empty_ok: bool = False) -> tuple[int, ...]:
    try:
        ids = tuple(int(t) for t in value)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a sequence of token ids, got {value!r:.80}") from None
    if not ids and not empty_ok:
        raise ValueError(f"{field} must not be empty; a training example needs at least one token")
    bad = [t for t in ids if t < 0]
    if bad:
        raise ValueError(f"{field} holds negative token ids {bad[:5]}; pass real vocabulary ids")
    return ids


@dataclass(frozen=True)
class SFTExample:
    """One (prompt → completion) training sequence as exact token ids. For BRiTE's θ-update the
    prompt ids are the *un-hinted* prompt x and the completion ids are those sampled by Q_ψ."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_ids", _ids(self.prompt_ids, "SFTExample.prompt_ids"))
        object.__setattr__(
            self, "completion_ids", _ids(self.completion_ids, "SFTExample.completion_ids")
        )


@dataclass(frozen=True)
class PreferencePair:
    """A DPO pair: one prompt, a preferred (correct) and a dispreferred (incorrect) completion."""

    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_ids", _ids(self.prompt_ids, "PreferencePair.prompt_ids"))
        object.__setattr__(self, "chosen_ids", _ids(self.chosen_ids, "PreferencePair.chosen_ids"))
        object.__setattr__(
            self, "rejected_ids", _ids(self.rejected_ids, "PreferencePair.rejected_ids")
        )
        if self.chosen_ids == self.rejected_ids:
            raise ValueError(
                "PreferencePair: chosen_ids and rejected_ids are identical, so the pair carries no "
                "preference; drop it"
            )


@dataclass(frozen=True)
class GradedSample:
    """A sampled completion and whether the verifier accepted it. ``prompt_ids`` is the prompt a
    pair trains on (the un-hinted x for BRiTE-DPO), not necessarily the one it was sampled from."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    correct: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_ids", _ids(self.prompt_ids, "GradedSample.prompt_ids"))
        object.__setattr__(
            self, "completion_ids", _ids(self.completion_ids, "GradedSample.completion_ids")
        )
        if not isinstance(self.correct, bool):
            raise ValueError(f"GradedSample.correct must be a bool, got {self.correct!r}")


def encode_prompt(tokenizer: Any, messages: Sequence[ChatMessage]) -> tuple[int, ...]:
    """Prompt ids exactly as :func:`agents.generate.generate` builds them."""
    return tuple(_encode_prompt(tokenizer, messages))


def encode_completion(tokenizer: Any, text: str) -> tuple[int, ...]:
    """Completion ids of ``text`` followed by EOS (so the model learns to stop), with no BOS."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no eos_token; set tokenizer.eos_token before training")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return (*(int(t) for t in ids), int(tokenizer.eos_token_id))


def text_example(tokenizer: Any, messages: Sequence[ChatMessage], completion: str) -> SFTExample:
    """An SFT example from chat messages and completion text (e.g. a human rationale),
    tokenized once here."""
    return SFTExample(encode_prompt(tokenizer, messages), encode_completion(tokenizer, completion))


def text_pair(
    tokenizer: Any, messages: Sequence[ChatMessage], chosen: str, rejected: str
) -> PreferencePair:
    """A preference pair from chat messages and two completion texts, tokenized once here."""
    return PreferencePair(
        encode_prompt(tokenizer, messages),
        encode_completion(tokenizer, chosen),
        encode_completion(tokenizer, rejected),
    )


def make_pairs(
    samples_by_prompt: Mapping[str, Sequence[GradedSample]],
    *,
    pairs_per_prompt: int = 1,
    seed: int = 0,
) -> list[PreferencePair]:
    """(correct, incorrect) pairs for BRiTE-DPO and iterative DPO.

    Per prompt: duplicate completions are dropped, then up to ``pairs_per_prompt`` distinct
    (correct, incorrect) combinations are drawn at random. A prompt whose samples are all
    correct or all wrong gives no pair. Prompts are visited in sorted key order and each has its
    own generator seeded by ``(seed, key)``, so the result depends only on the input and ``seed``.
    """
    if isinstance(pairs_per_prompt, bool) or not isinstance(pairs_per_prompt, int):
        raise ValueError(f"pairs_per_prompt must be an int >= 1, got {pairs_per_prompt!r}")
    if pairs_per_prompt < 1:
        raise ValueError(f"pairs_per_prompt must be >= 1, got {pairs_per_prompt}")
    pairs: list[PreferencePair] = []
    for key in sorted(samples_by_prompt):
        samples = samples_by_prompt[key]
        if not samples:
            continue
        prompts = {s.prompt_ids for s in samples}
        if len(prompts) > 1:
            raise ValueError(
                f"make_pairs: the samples of prompt {key!r} have {len(prompts)} different "
                "prompt_ids; group samples by the prompt they train on"
            )
        correct = _unique(s.completion_ids for s in samples if s.correct)
        wrong = _unique(s.completion_ids for s in samples if not s.correct)
        if not correct or not wrong:
            continue
        rng = random.Random(f"{seed}\x00{key}")
        picks = rng.sample(
            range(len(correct) * len(wrong)), min(pairs_per_prompt, len(correct) * len(wrong))
        )
        prompt = samples[0].prompt_ids
        pairs += [
            PreferencePair(prompt, correct[i // len(wrong)], wrong[i % len(wrong)]) for i in picks
        ]
    return pairs


def _unique(items: Iterator[tuple[int, ...]] | Any) -> list[tuple[int, ...]]:
    seen: dict[tuple[int, ...], None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


# -- settings --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainSettings:
    """What SFT and DPO share. ``precision="auto"`` is bf16 mixed precision on a CUDA GPU that
    supports it and float32 otherwise (CPUs train in float32). ``logging_steps=1`` makes the
    reported first/last loss exact."""

    learning_rate: float = 1e-5
    epochs: int = 1
    batch_size: int = 8
    grad_accumulation: int = 1
    max_length: int = 2048
    """Longest prompt+completion sequence; longer ones are cut at the end (keep the start)."""
    seed: int = 0
    lr_scheduler: Scheduler = "linear"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    precision: Precision = "auto"
    device: Device = "auto"
    logging_steps: int = 1
    progress: bool = False
    """Show TRL's progress bars."""
    report_to: tuple[str, ...] = ()
    """Trainer integrations (e.g. ``("tensorboard",)``); none by default, runs log themselves."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not self.learning_rate > 0:
            raise ValueError(f"{name}.learning_rate must be > 0, got {self.learning_rate!r}")
        for field in ("epochs", "batch_size", "grad_accumulation", "max_length", "logging_steps"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}.{field} must be an int >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"{name}.seed must be an int >= 0, got {self.seed!r}")
        if self.lr_scheduler not in _SCHEDULERS:
            raise ValueError(
                f"{name}.lr_scheduler must be one of {_SCHEDULERS}, got {self.lr_scheduler!r}"
            )
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"{name}.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"{name}.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"{name}.max_grad_norm must be > 0, got {self.max_grad_norm!r}")
        if self.precision not in _PRECISIONS:
            raise ValueError(
                f"{name}.precision must be one of {_PRECISIONS}, got {self.precision!r}"
            )
        if self.device not in _DEVICES:
            raise ValueError(f"{name}.device must be one of {_DEVICES}, got {self.device!r}")
        object.__setattr__(self, "report_to", tuple(self.report_to))


@dataclass(frozen=True)
class SFTSettings(TrainSettings):
    """SFT (the θ-update; RS, STaR and human-rationale SFT). Loss on completion tokens only."""


@dataclass(frozen=True)
class DPOSettings(TrainSettings):
    """DPO (BRiTE-DPO, iterative DPO). ``beta`` is the DPO temperature on the log-ratio."""

    learning_rate: float = 1e-6
    beta: float = 0.1
    loss_type: DPOLoss = "sigmoid"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0:
            raise ValueError(f"DPOSettings.beta must be > 0, got {self.beta!r}")
        if self.loss_type not in _DPO_LOSSES:
            raise ValueError(
                f"DPOSettings.loss_type must be one of {_DPO_LOSSES}, got {self.loss_type!r}"
            )


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainMetrics:
    """What one SFT/DPO run did. Token counts are per pass over the data, after truncation to
    ``max_length``; the ``trained_*`` properties multiply by the epochs (what budgets count).
    For DPO, completion tokens count chosen and rejected, and total tokens count both
    sequences, prompt included (what the forward passes see)."""

    kind: Literal["sft", "dpo"]
    examples: int
    """Examples (pairs for DPO) trained on."""
    skipped: int
    """Examples dropped because the prompt alone filled ``max_length``."""
    epochs: int
    steps: int
    """Optimizer steps."""
    loss_first: float | None
    loss_last: float | None
    completion_tokens: int
    total_tokens: int
    seconds: float
    margin_first: float | None = None
    """DPO only: TRL's ``rewards/margins`` (β-scaled chosen-minus-rejected log-ratio) at the
    first and last logging step."""
    margin_last: float | None = None

    @property
    def trained_completion_tokens(self) -> int:
        return self.completion_tokens * self.epochs

    @property
    def trained_total_tokens(self) -> int:
        return self.total_tokens * self.epochs


class Trained(NamedTuple):
    """The trained model (the same object that was passed in, trained in place, in eval mode)
    and what the run did."""

    model: Any
    metrics: TrainMetrics


# -- training ----------------------------------------------------------------------------------
def sft(
    model: Any,
    tokenizer: Any,
    examples: Sequence[SFTExample],
    settings: SFTSettings,
    *,
    on_log: LogFn | None = None,
) -> Trained:
    """Fine-tune ``model`` in place on ``examples`` with TRL's SFTTrainer, loss on the
    completion tokens only, training on exactly the ids given."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    _check_vocab(model, [(e.prompt_ids, e.completion_ids) for e in examples])
    rows: dict[str, list[list[int]]] = {"input_ids": [], "completion_mask": []}
    completion_tokens = total_tokens = skipped = 0
    for e in examples:
        ids = (e.prompt_ids + e.completion_ids)[: settings.max_length]
        n_completion = len(ids) - len(e.prompt_ids)
        if n_completion <= 0:
            skipped += 1
            continue
        rows["input_ids"].append(list(ids))
        rows["completion_mask"].append([0] * len(e.prompt_ids) + [1] * n_completion)
        completion_tokens += n_completion
        total_tokens += len(ids)
    _warn_skipped("sft", skipped, len(examples), settings.max_length)
    n = len(rows["input_ids"])
    if n == 0:
        return _nothing_to_train(model, "sft", skipped, settings)

    with _trainer_env(settings) as out_dir, _restoring_forward(model):
        args = SFTConfig(
            **_common_args(settings, out_dir),
            max_length=settings.max_length,
            completion_only_loss=True,
            packing=False,
            padding_free=False,
            shuffle_dataset=False,
        )
        collector = _LogCollector(on_log)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict(rows),
            processing_class=tokenizer,
            callbacks=[collector.callback()],
        )
        _quiet(trainer, settings)
        started = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - started
        steps = int(trainer.state.global_step)
    model.eval()
    losses = collector.values("loss")
    return Trained(
        model,
        TrainMetrics(
            kind="sft",
            examples=n,
            skipped=skipped,
            epochs=settings.epochs,
            steps=steps,
            loss_first=losses[0] if losses else None,
            loss_last=losses[-1] if losses else None,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
            seconds=seconds,
        ),
    )


def dpo(
    model: Any,
    ref_model: Any | None,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    settings: DPOSettings,
    *,
    on_log: LogFn | None = None,
) -> Trained:
    """Train ``model`` in place with TRL's DPOTrainer on exactly the ids of ``pairs``.

    ``ref_model=None`` uses a frozen copy of ``model`` as it is on entry (the usual DPO
    reference; for iterative DPO, the policy at the start of the iteration)."""
    from datasets import Dataset
    from trl import DPOConfig

    _check_vocab(
        model,
        [(p.prompt_ids, p.chosen_ids) for p in pairs]
        + [(p.prompt_ids, p.rejected_ids) for p in pairs],
    )
    rows: dict[str, list[list[int]]] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    completion_tokens = total_tokens = skipped = 0
    limit = settings.max_length
    for p in pairs:
        if len(p.prompt_ids) >= limit:  # TRL's collator would cut every completion token
            skipped += 1
            continue
        rows["prompt_ids"].append(list(p.prompt_ids))
        rows["chosen_ids"].append(list(p.chosen_ids))
        rows["rejected_ids"].append(list(p.rejected_ids))
        for completion in (p.chosen_ids, p.rejected_ids):
            length = min(len(p.prompt_ids) + len(completion), limit)
            completion_tokens += length - len(p.prompt_ids)
            total_tokens += length
    _warn_skipped("dpo", skipped, len(pairs), limit)
    n = len(rows["prompt_ids"])
    if n == 0:
        return _nothing_to_train(model, "dpo", skipped, settings)

    if ref_model is None:
        ref_model = copy.deepcopy(model)
    ref_model.eval()
    ref_model.requires_grad_(False)
    with _trainer_env(settings) as out_dir, _restoring_forward(model, ref_model):
        args = DPOConfig(
            **_common_args(settings, out_dir),
            max_length=limit,
            truncation_mode="keep_start",
            beta=settings.beta,
            loss_type=[settings.loss_type],
            precompute_ref_log_probs=False,
            padding_free=False,
        )
        collector = _LogCollector(on_log)
        trainer = _exact_ids_dpo_trainer()(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=Dataset.from_dict(rows),
            processing_class=tokenizer,
            callbacks=[collector.callback()],
        )
        _quiet(trainer, settings)
        started = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - started
        steps = int(trainer.state.global_step)
    model.eval()
    losses = collector.values("loss")
    margins = collector.values("rewards/margins")
    return Trained(
        model,
        TrainMetrics(
            kind="dpo",
            examples=n,
            skipped=skipped,
            epochs=settings.epochs,
            steps=steps,
            loss_first=losses[0] if losses else None,
            loss_last=losses[-1] if losses else None,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
            seconds=seconds,
            margin_first=margins[0] if margins else None,
            margin_last=margins[-1] if margins else None,
        ),
    )


def completion_logprob(
    model: Any, prompt_ids: Sequence[int], completion_ids: Sequence[int]
) -> float:
    """Teacher-forced log P(completion | prompt) under ``model``, summed over completion tokens
    (e.g. BRiTE's r(x, z) = log P_θ(y* | x, z), or a check that training moved the model)."""
    import torch

    prompt = _ids(prompt_ids, "prompt_ids")
    completion = _ids(completion_ids, "completion_ids")
    device = next(model.parameters()).device
    ids = torch.tensor([prompt + completion], device=device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    logps = torch.log_softmax(logits, dim=-1)
    target = ids[0, len(prompt) :]
    return float(logps.gather(-1, target[:, None]).sum())


# -- helpers -----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _exact_ids_dpo_trainer() -> type:
    """DPOTrainer whose dataset preparation passes ``prompt_ids``/``chosen_ids``/
    ``rejected_ids`` through untouched (TRL 1.16 would rebuild them from text)."""
    from trl import DPOTrainer

    class ExactIdsDPOTrainer(DPOTrainer):  # type: ignore[misc]
        def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
            missing = {"prompt_ids", "chosen_ids", "rejected_ids"} - set(dataset.column_names)
            if missing:
                raise ConfigError(
                    f"DPO dataset lacks the token-id columns {sorted(missing)}; build it with "
                    "agents.distill.dpo from PreferencePair objects"
                )
            return dataset

    return ExactIdsDPOTrainer


def _check_vocab(model: Any, sequences: Sequence[tuple[tuple[int, ...], tuple[int, ...]]]) -> None:
    vocab = int(model.get_input_embeddings().num_embeddings)
    for prompt, completion in sequences:
        top = max(prompt + completion)
        if top >= vocab:
            raise ConfigError(
                f"token id {top} is outside the model's vocabulary of {vocab}; the examples were "
                "tokenized for another model"
            )


def _warn_skipped(kind: str, skipped: int, total: int, limit: int) -> None:
    if skipped:
        log.warning(
            "%s: %d of %d examples skipped: their prompt alone fills max_length=%d; raise "
            "max_length to train on them",
            kind,
            skipped,
            total,
            limit,
        )


def _nothing_to_train(
    model: Any, kind: Literal["sft", "dpo"], skipped: int, settings: TrainSettings
) -> Trained:
    log.warning("%s: no examples to train on; the model is left unchanged", kind)
    model.eval()
    return Trained(
        model,
        TrainMetrics(
            kind=kind,
            examples=0,
            skipped=skipped,
            epochs=settings.epochs,
            steps=0,
            loss_first=None,
            loss_last=None,
            completion_tokens=0,
            total_tokens=0,
            seconds=0.0,
        ),
    )


def _common_args(settings: TrainSettings, out_dir: str) -> dict[str, Any]:
    """TrainingArguments shared by SFTConfig and DPOConfig: CPU-safe precision, no checkpoints
    (runs checkpoint themselves), no integrations unless asked."""
    import torch

    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA GPU is visible; use device=auto or cpu")
    on_cpu = settings.device == "cpu" or not torch.cuda.is_available()
    precision = settings.precision
    if precision == "auto":
        precision = "bfloat16" if not on_cpu and torch.cuda.is_bf16_supported() else "float32"
    if on_cpu and precision != "float32":
        raise ConfigError(
            f"precision={precision!r} is for GPUs; training on CPU needs precision=float32 "
            "(or auto)"
        )
    return {
        "output_dir": out_dir,
        "num_train_epochs": settings.epochs,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accumulation,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "warmup_steps": settings.warmup_ratio,
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "logging_strategy": "steps",
        "logging_steps": settings.logging_steps,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": list(settings.report_to) or "none",
        "disable_tqdm": not settings.progress,
        "use_cpu": on_cpu,
        "bf16": precision == "bfloat16",
        "fp16": precision == "float16",
        _checkpointing_field(): settings.gradient_checkpointing,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": not on_cpu,
        "dataset_num_proc": None,
    }


@lru_cache(maxsize=1)
def _checkpointing_field() -> str:
    """transformers 5 renamed ``gradient_checkpointing`` to ``activation_checkpointing`` (the old
    name warns); TRL's default for it is True, so it is always set explicitly."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return (
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else "gradient_checkpointing"
    )


def _quiet(trainer: Any, settings: TrainSettings) -> Any:
    """Without progress bars the Trainer prints every log dict to stdout; runs log themselves."""
    from transformers.trainer_callback import PrinterCallback

    if not settings.progress:
        trainer.remove_callback(PrinterCallback)
    return trainer


@contextlib.contextmanager
def _trainer_env(settings: TrainSettings) -> Iterator[str]:
    """A throwaway output dir for the HF Trainer, and datasets' progress bars off unless asked."""
    from datasets.utils import logging as ds_logging

    bars = ds_logging.is_progress_bar_enabled()
    if not settings.progress:
        ds_logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory(prefix="brite-trl-") as out_dir, warnings.catch_warnings():
            # TRL 1.16's DPO reference forward calls a transformers-5 deprecated alias.
            warnings.filterwarnings(
                "ignore",
                message="`is_gradient_checkpointing` is deprecated",
                category=FutureWarning,
            )
            yield out_dir
    finally:
        if bars:
            ds_logging.enable_progress_bar()


_MISSING = object()


@contextlib.contextmanager
def _restoring_forward(*models: Any) -> Iterator[None]:
    """TRL patches ``model.forward`` with a fused LM head (``add_fused_lm_head``); put the
    original back after training so repeated θ-updates do not stack patches on one model."""
    saved = [(m, m.__dict__.get("forward", _MISSING)) for m in models]
    try:
        yield
    finally:
        for m, forward in saved:
            if forward is _MISSING:
                m.__dict__.pop("forward", None)
            else:
                m.__dict__["forward"] = forward


class _LogCollector:
    """Keeps the numeric TRL logs of a run (and forwards them to ``on_log``)."""

    def __init__(self, on_log: LogFn | None) -> None:
        self.on_log = on_log
        self.logs: list[dict[str, float]] = []

    def callback(self) -> Any:
        from transformers import TrainerCallback

        collector = self

        class _Callback(TrainerCallback):  # type: ignore[misc]
            def on_log(
                self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
            ) -> None:
                if not logs or "train_runtime" in logs:  # the end-of-training summary
                    return
                numeric = {
                    k: float(v)
                    for k, v in logs.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                }
                collector.logs.append(numeric)
                if collector.on_log is not None:
                    collector.on_log(int(state.global_step), numeric)

        return _Callback()

    def values(self, key: str) -> list[float]:
        return [entry[key] for entry in self.logs if key in entry]
