"""Rollout backends and the model pieces PPO and BRiTE share.

A policy samples completions and reports the exact ids it sampled with their behaviour
log-probs. Training scores those ids, never a re-tokenization of the decoded text: decoding
and encoding again can split text differently and silently change what is trained on.

- :class:`Sample` and the :class:`Policy` protocol: what every rollout backend returns and
  implements (:class:`HFPolicy` here, ``agents.vllm_policy.VLLMPolicy`` on GPUs).
- :class:`IncrementalDecoder`: one forward pass per generated token over a left-padded batch,
  reusing the KV cache and dropping finished rows; PPO's token-mode rollout drives it.
- :func:`token_logprobs`: teacher-forced per-token log-probs of completions given prompts
  (the reference model, the old policy, BRiTE's ``log P_θ(y* | x, z)`` reward).
- :class:`PolicyWithValue`: a causal LM plus a scalar value head on its last hidden state.
- References (:func:`make_reference`): a frozen copy of the policy, or with LoRA
  (:func:`apply_lora`) the same weights with the adapter disabled.

Log-probs are those of ``softmax(logits / temperature)`` everywhere, so a sample's
behaviour log-probs and a teacher-forced pass at the same temperature agree. ``top_p < 1``
samples from a truncated distribution whose log-probs these are not; keep ``top_p = 1`` for
on-policy RL.
"""

from __future__ import annotations

import copy
import importlib.metadata
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from agents.errors import ConfigError
from agents.generate import encode_prompt
from brite_envs.types import ChatMessage

__all__ = [
    "AdapterDisabledReference",
    "CompletionOutput",
    "FrozenReference",
    "HFPolicy",
    "IncrementalDecoder",
    "LoRAConfig",
    "Policy",
    "PolicyOutput",
    "PolicyWithValue",
    "Reference",
    "Sample",
    "StepOutput",
    "apply_lora",
    "causal_lm",
    "encode_messages",
    "forward_completions",
    "is_peft_model",
    "left_pad",
    "make_reference",
    "positions",
    "right_pad",
    "sample_from_logits",
    "shared_prompts",
    "token_logprobs",
]


# ------------------------------------------------------------------------------ samples
@dataclass(frozen=True)
class Sample:
    """One sampled completion with the exact ids the policy produced."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    """The sampled ids, including the final stop id when ``finished``."""
    logprobs: tuple[float, ...]
    """Behaviour log-prob of each completion id under ``softmax(logits / temperature)``."""
    text: str
    """The completion decoded without its stop id."""
    finished: bool
    """True if the policy emitted a stop id; False if it hit ``max_new_tokens``."""

    def __post_init__(self) -> None:
        if len(self.logprobs) != len(self.completion_ids):
            raise ValueError(
                f"Sample has {len(self.completion_ids)} completion ids but "
                f"{len(self.logprobs)} log-probs"
            )


@runtime_checkable
class Policy(Protocol):
    """What a rollout backend does: encode chat prompts, sample, and follow weight updates."""

    tokenizer: Any
    """The tokenizer behind ``encode``: what turns ids back into text."""

    def encode(self, messages: Sequence[ChatMessage]) -> list[int]: ...

    def sample(
        self,
        prompt_ids_batch: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Sample]:
        """One sample per prompt, with its exact ids and log-probs. ``seed`` seeds the batch;
        ``seeds`` (one per prompt) makes each sample a function of its own seed alone."""
        ...

    def sync_weights(self, model: nn.Module) -> None: ...


def check_sampling(max_new_tokens: int, temperature: float, top_p: float) -> None:
    """The sampling arguments every :class:`Policy` backend accepts, as one-line errors."""
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")


def check_seeds(n: int, seed: int | None, seeds: Sequence[int] | None) -> None:
    """``seed`` seeds the batch; ``seeds`` gives each row its own (and its draw then does not
    depend on the batch it is in). Not both."""
    if seeds is None:
        return
    if seed is not None:
        raise ValueError("pass seed (one for the batch) or seeds (one per row), not both")
    if len(seeds) != n:
        raise ValueError(f"{n} prompts but {len(seeds)} seeds: give one seed per prompt")


def encode_messages(tokenizer: Any, messages: Sequence[ChatMessage]) -> list[int]:
    """Prompt ids as the token-mode envs and HF generation encode them."""
    return encode_prompt(tokenizer, messages)


# ------------------------------------------------------------------------------ padding
def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """``(ids, mask)`` of shape ``(B, longest)``, padded on the left so every row ends at the
    last column and generation continues all rows in step."""
    if not seqs or any(len(s) == 0 for s in seqs):
        raise ValueError("every prompt needs at least one token")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def right_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """``(ids, mask)`` of shape ``(B, longest)`` (at least one column), padded on the right."""
    width = max([len(s) for s in seqs] + [1])
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def positions(mask: Tensor) -> Tensor:
    """Position ids that skip padding, so a left-padded row sees the positions it would see
    unpadded (and a KV-cached step the same as a full pass)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def shared_prompts(query: Tensor, query_mask: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(unique_query, unique_mask, inverse)`` when some rows of a left-padded batch hold
    the same prompt (k samples per problem), else None.

    Rows with one prompt can share its forward pass: run each distinct prompt once and
    copy its KV cache to its rows (``inverse[i]`` is row i's prompt). With prompts longer
    than completions this removes most of the compute of a group's prefill.
    """
    if query.shape[0] < 2:
        return None
    width = query.shape[1]
    keys = torch.cat([query, query_mask.to(query.dtype)], 1)
    unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
    if unique.shape[0] == query.shape[0]:
        return None
    return unique[:, :width], unique[:, width:].to(query_mask.dtype), inverse


# ------------------------------------------------------------------------------ models
def _version(package: str) -> tuple[int, ...]:
    parts = []
    for p in importlib.metadata.version(package).split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


# transformers renamed the KV-cache argument ``past_key_values`` to ``cache`` (the old name
# warns, and goes in 5.40); 5.24 is the first version this project tests with the new name.
_CACHE_KWARG = "cache" if _version("transformers") >= (5, 24) else "past_key_values"


def _cache_of(out: Any) -> Any:
    """The KV cache of a model output, under its new or its old name."""
    cache = out.get("cache", None)
    return cache if cache is not None else out.get("past_key_values", None)


def is_peft_model(model: nn.Module) -> bool:
    """True for a ``peft`` model (checked without importing peft)."""
    return any(cls.__module__.startswith("peft.") for cls in type(model).__mro__)


def causal_lm(model: nn.Module) -> nn.Module:
    """The causal LM inside ``model`` (a :class:`PolicyWithValue` or the LM itself)."""
    return model.lm if isinstance(model, PolicyWithValue) else model


@dataclass(frozen=True)
class PolicyOutput:
    """Logits, values (None for a plain LM) and the KV cache of one forward pass."""

    logits: Tensor
    values: Tensor | None
    cache: Any


def _forward(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    position_ids: Tensor,
    *,
    cache: Any = None,
    use_cache: bool = False,
    logits_to_keep: int = 0,
) -> PolicyOutput:
    """One forward of a :class:`PolicyWithValue` or of a plain causal LM."""
    if isinstance(model, PolicyWithValue):
        return model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
        )
    kwargs: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "use_cache": use_cache,
        "logits_to_keep": logits_to_keep,
    }
    if cache is not None:
        kwargs[_CACHE_KWARG] = cache
    out = model(**kwargs)
    return PolicyOutput(out.logits, None, _cache_of(out) if use_cache else None)


class PolicyWithValue(nn.Module):
    """A causal LM with a scalar value head on its last hidden state (PPO's critic shares
    the policy's trunk, so one forward gives both).

    The head starts at zero, so early values are 0 and advantages are the raw returns.
    ``save_pretrained`` writes the LM as a normal Hugging Face folder (or a peft adapter
    folder) plus ``value_head.safetensors``.
    """

    VALUE_HEAD_FILE = "value_head.safetensors"

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm: Any = lm  # a transformers PreTrainedModel (or a peft model around one)
        hidden = _hidden_size(lm)
        self.value_head = nn.Linear(hidden, 1, dtype=torch.float32)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        device = next(lm.parameters()).device
        self.value_head.to(device)

    @property
    def config(self) -> Any:
        return self.lm.config

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def forward(
        self,
        input_ids: Tensor,
        *,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
    ) -> PolicyOutput:
        """Logits and values of the last ``logits_to_keep`` positions (0: all)."""
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "use_cache": use_cache,
            "logits_to_keep": logits_to_keep,
            "output_hidden_states": True,
        }
        if cache is not None:
            kwargs[_CACHE_KWARG] = cache
        out = self.lm(**kwargs)
        hidden = out.hidden_states[-1]
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return PolicyOutput(out.logits, values, _cache_of(out) if use_cache else None)

    def save_pretrained(self, path: str | Path) -> None:
        """The LM as a Hugging Face folder plus the value head beside it."""
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(str(folder))
        state = {k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()}
        save_file(state, str(folder / self.VALUE_HEAD_FILE))

    @classmethod
    def from_pretrained(cls, path: str | Path, **lm_kwargs: Any) -> PolicyWithValue:
        """Load what :meth:`save_pretrained` wrote; a folder without a value head (any HF
        causal LM) gets a fresh zero head. A peft adapter folder loads onto its base model."""
        from safetensors.torch import load_file

        folder = Path(path)
        if (folder / "adapter_config.json").exists():
            peft = _import_peft()
            lm = peft.AutoPeftModelForCausalLM.from_pretrained(
                str(folder), is_trainable=True, **lm_kwargs
            )
        else:
            from transformers import AutoModelForCausalLM

            lm = AutoModelForCausalLM.from_pretrained(str(folder), **lm_kwargs)
        lm.eval()
        model = cls(lm)
        head = folder / cls.VALUE_HEAD_FILE
        if head.exists():
            model.value_head.load_state_dict(load_file(str(head), device=str(model.device)))
        return model


def _hidden_size(lm: Any) -> int:
    config = lm.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    size = getattr(text, "hidden_size", None)
    if size is None:
        raise ConfigError(
            f"cannot find hidden_size in the config of {type(lm).__name__}; the value head needs it"
        )
    return int(size)


# ------------------------------------------------------------------------------ sampling
def sample_from_logits(
    logits: Tensor,
    *,
    temperature: float,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    uniforms: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample one token per row; return ``(tokens, logprobs)``, the log-probs under
    ``softmax(logits / temperature)``. Temperature 0 is greedy (log-probs at temperature 1).

    With ``uniforms`` (one number in [0, 1) per row) each row is drawn by inverse CDF from
    its own number, so a row's draw depends on its logits and its uniform only, never on the
    other rows of the batch; otherwise ``torch.multinomial`` draws with ``generator``."""
    logits = logits.float()
    if temperature == 0:
        logp_all = torch.log_softmax(logits, -1)
        tokens = logits.argmax(-1)
    else:
        logp_all = torch.log_softmax(logits / temperature, -1)
        probs = logp_all.exp()
        if top_p < 1.0:
            sorted_p, order = probs.sort(-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest nucleus
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        if uniforms is None:
            tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        else:
            cdf = probs.cumsum(-1)
            target = (uniforms.to(cdf.device) * cdf[:, -1])[:, None]
            tokens = torch.searchsorted(cdf, target, right=True).squeeze(-1)
            vocab = probs.shape[-1]
            last = (vocab - 1) - (probs > 0).flip(-1).int().argmax(-1)  # rounding at the top
            tokens = torch.where(tokens >= vocab, last, tokens)
    return tokens, logp_all.gather(-1, tokens[:, None]).squeeze(-1)


def row_uniforms(seeds: Sequence[int], steps: int) -> Tensor:
    """``(len(seeds), steps)`` uniforms, row ``i`` from its own generator seeded ``seeds[i]``:
    what makes a sample a function of its seed alone, whatever batch it is drawn in."""
    out = torch.empty((len(seeds), steps))
    for i, s in enumerate(seeds):
        out[i] = torch.rand(steps, generator=torch.Generator().manual_seed(int(s)))
    return out


@dataclass(frozen=True)
class StepOutput:
    """Next-token logits ``(R, V)`` and values ``(R,)`` (None for a plain LM) of the rows
    still decoding; ``rows`` are their indices in the original batch."""

    logits: Tensor
    values: Tensor | None
    rows: Tensor


class IncrementalDecoder:
    """Decode a left-padded batch one token at a time with a KV cache.

    :meth:`start` runs the prompts (each distinct prompt once when ``share_prompts``); each
    :meth:`advance` appends one token per row still decoding and drops the rows the caller
    marks finished, so the batch shrinks as episodes end. Layout and position ids match
    :func:`forward_completions`, so a teacher-forced pass reproduces the sampled log-probs
    and values.
    """

    def __init__(
        self,
        model: nn.Module,
        prompt_ids: Sequence[Sequence[int]],
        *,
        pad_id: int,
        share_prompts: bool = True,
    ) -> None:
        self.model = model
        self.share_prompts = share_prompts
        device = next(model.parameters()).device
        self.input_ids, self.mask = left_pad(prompt_ids, pad_id, device)
        self.rows = torch.arange(len(prompt_ids), device=device)
        self.cache: Any = None
        self._next_pos = self.mask.sum(-1)  # position id of the next token of each row

    @torch.no_grad()
    def start(self) -> StepOutput:
        """Run the prompts (each distinct prompt once); return the first next-token logits."""
        shared = shared_prompts(self.input_ids, self.mask) if self.share_prompts else None
        ids, mask = (shared[0], shared[1]) if shared is not None else (self.input_ids, self.mask)
        out = _forward(self.model, ids, mask, positions(mask), use_cache=True, logits_to_keep=1)
        self.cache = out.cache
        logits = out.logits[:, -1]
        values = None if out.values is None else out.values[:, -1]
        if shared is not None:
            inverse = shared[2]
            self.cache.batch_select_indices(inverse)
            logits = logits[inverse]
            values = None if values is None else values[inverse]
        return StepOutput(logits, values, self.rows)

    @torch.no_grad()
    def advance(self, tokens: Tensor, keep: Tensor) -> StepOutput:
        """Append ``tokens`` (one per current row) and keep only the rows where ``keep``."""
        if not bool(keep.all()):
            idx = torch.nonzero(keep).squeeze(-1)
            self.cache.batch_select_indices(idx)
            self.mask = self.mask[idx]
            self.rows = self.rows[idx]
            self._next_pos = self._next_pos[idx]
            tokens = tokens[idx]
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], 1)
        out = _forward(
            self.model,
            tokens[:, None],
            self.mask,
            self._next_pos[:, None],
            cache=self.cache,
            use_cache=True,
        )
        self.cache = out.cache
        self._next_pos = self._next_pos + 1
        values = None if out.values is None else out.values[:, -1]
        return StepOutput(out.logits[:, -1], values, self.rows)


class HFPolicy:
    """Batched sampling with a Hugging Face causal LM through :class:`IncrementalDecoder`.

    It samples with the very module being trained, so :meth:`sync_weights` has nothing to do.
    ``stop_ids`` defaults to the tokenizer's EOS id, as the token-mode envs do.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        stop_ids: Iterable[int] | None = None,
        share_prompts: bool = True,
    ) -> None:
        self.model = causal_lm(model)
        self.share_prompts = share_prompts
        self.tokenizer = tokenizer
        ids = set(stop_ids) if stop_ids is not None else {tokenizer.eos_token_id}
        ids.discard(None)
        if not ids:
            raise ConfigError("HFPolicy needs a stop id: the tokenizer has no eos_token_id")
        self.stop_ids = frozenset(int(t) for t in ids)
        candidates = (getattr(tokenizer, "pad_token_id", None), tokenizer.eos_token_id, 0)
        self.pad_id = int(next(c for c in candidates if c is not None))  # masked out anyway

    def encode(self, messages: Sequence[ChatMessage]) -> list[int]:
        return encode_messages(self.tokenizer, messages)

    def sample(
        self,
        prompt_ids_batch: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Sample]:
        check_sampling(max_new_tokens, temperature, top_p)
        n = len(prompt_ids_batch)
        check_seeds(n, seed, seeds)
        if n == 0:
            return []
        decoder = IncrementalDecoder(
            self.model, prompt_ids_batch, pad_id=self.pad_id, share_prompts=self.share_prompts
        )
        generator = _generator(seed, decoder.rows.device)
        uniforms = row_uniforms(seeds, max_new_tokens) if seeds is not None else None
        ids = torch.full((n, max_new_tokens), self.pad_id, dtype=torch.long)
        logps = torch.zeros((n, max_new_tokens))
        lengths = torch.zeros(n, dtype=torch.long)
        finished = torch.zeros(n, dtype=torch.bool)
        stop = torch.tensor(sorted(self.stop_ids), device=decoder.rows.device)
        step = decoder.start()
        for t in range(max_new_tokens):
            rows = step.rows.cpu()
            tokens, lp = sample_from_logits(
                step.logits,
                temperature=temperature,
                top_p=top_p,
                generator=generator,
                uniforms=None if uniforms is None else uniforms[rows, t],
            )
            ids[rows, t] = tokens.cpu()
            logps[rows, t] = lp.cpu()
            lengths[rows] += 1
            ended = torch.isin(tokens, stop)
            finished[rows] = ended.cpu()
            if t + 1 == max_new_tokens or bool(ended.all()):
                break
            step = decoder.advance(tokens, ~ended)
        samples = []
        for i, prompt in enumerate(prompt_ids_batch):
            k = int(lengths[i])
            completion = tuple(int(x) for x in ids[i, :k])
            text_ids = completion[:-1] if finished[i] else completion
            samples.append(
                Sample(
                    prompt_ids=tuple(int(x) for x in prompt),
                    completion_ids=completion,
                    logprobs=tuple(float(x) for x in logps[i, :k]),
                    text=self.tokenizer.decode(list(text_ids), skip_special_tokens=True),
                    finished=bool(finished[i]),
                )
            )
        return samples

    def sync_weights(self, model: nn.Module) -> None:
        """Nothing to do: this policy samples with the trained module itself."""


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(int(seed))


# ------------------------------------------------------------------------------ scoring
@dataclass(frozen=True)
class CompletionOutput:
    """Teacher-forced outputs over the completion positions, right-padded to ``(B, T)``:
    log-probs of the given ids, the temperature-scaled logits ``(B, T, V)`` and the values
    (None for a plain LM). Padding positions hold garbage; mask them."""

    logprobs: Tensor
    logits: Tensor
    values: Tensor | None


def forward_completions(
    model: nn.Module,
    query: Tensor,
    query_mask: Tensor,
    response: Tensor,
    response_mask: Tensor,
    *,
    temperature: float = 1.0,
    share_prompts: bool = True,
) -> CompletionOutput:
    """Teacher-forced scores of ``response`` after ``query`` (left-padded query,
    right-padded response), computed only at the response positions (``logits_to_keep``:
    the prompt's logits are never materialised).

    When rows repeat a prompt (and ``share_prompts``), each distinct prompt runs once and
    its KV cache is copied to its rows before the responses run on top: the same numbers
    and the same gradients (the copy is differentiable), for a fraction of the prompt
    compute.
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0 to score completions, got {temperature}")
    width = response.shape[1]
    mask = torch.cat([query_mask, response_mask], 1)
    shared = shared_prompts(query, query_mask) if share_prompts else None
    if shared is None:
        input_ids = torch.cat([query, response], 1)
        out = _forward(model, input_ids, mask, positions(mask), logits_to_keep=width + 1)
        raw_logits, values = out.logits[:, :-1], None if out.values is None else out.values[:, :-1]
    else:
        unique_query, unique_mask, inverse = shared
        prompt = _forward(
            model,
            unique_query,
            unique_mask,
            positions(unique_mask),
            use_cache=True,
            logits_to_keep=1,
        )
        raw_logits = prompt.logits[inverse]
        values = None if prompt.values is None else prompt.values[inverse]
        if width > 1:  # the last response token predicts nothing we score
            cache = prompt.cache
            cache.batch_select_indices(inverse)
            body_mask = mask[:, : query.shape[1] + width - 1]
            out = _forward(
                model,
                response[:, :-1],
                body_mask,
                positions(body_mask)[:, query.shape[1] :],
                cache=cache,
                use_cache=True,
            )
            raw_logits = torch.cat([raw_logits, out.logits], 1)
            if values is not None and out.values is not None:
                values = torch.cat([values, out.values], 1)
    logits = raw_logits.float() / temperature
    logp = logits.gather(-1, response[..., None]).squeeze(-1) - torch.logsumexp(logits, -1)
    return CompletionOutput(logp, logits, values)


def token_logprobs(
    model: nn.Module,
    prompt_ids_list: Sequence[Sequence[int]],
    completion_ids_list: Sequence[Sequence[int]],
    *,
    temperature: float = 1.0,
    batch_size: int = 16,
    pad_id: int = 0,
    share_prompts: bool = True,
) -> Tensor:
    """Per-token log-probs ``log P(c_t | prompt, c_<t)`` of each completion, teacher-forced.

    Returns a float tensor ``(B, T)`` on the CPU, ``T`` the longest completion, right-padded
    with 0.0, so ``.sum(-1)`` is each completion's total log-prob (BRiTE's
    ``log P_θ(y* | x, z)`` with prompt ``x + z`` and completion ``y*``). Runs without grad.
    ``pad_id`` only fills padding positions, which the attention mask hides.
    """
    if len(prompt_ids_list) != len(completion_ids_list):
        raise ConfigError(
            f"token_logprobs got {len(prompt_ids_list)} prompts and "
            f"{len(completion_ids_list)} completions"
        )
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    n = len(prompt_ids_list)
    width = max([len(c) for c in completion_ids_list] + [0])
    result = torch.zeros((n, width))
    if n == 0 or width == 0:
        return result
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, n, batch_size):
            prompts = prompt_ids_list[start : start + batch_size]
            completions = completion_ids_list[start : start + batch_size]
            query, query_mask = left_pad(prompts, pad_id, device)
            response, response_mask = right_pad(completions, pad_id, device)
            out = forward_completions(
                model,
                query,
                query_mask,
                response,
                response_mask,
                temperature=temperature,
                share_prompts=share_prompts,
            )
            logp = (out.logprobs * response_mask).cpu()
            result[start : start + len(prompts), : logp.shape[1]] = logp
    return result


# ------------------------------------------------------------------------------ references
@runtime_checkable
class Reference(Protocol):
    """The KL anchor: per-token log-probs of completions under the reference model."""

    def logprobs(
        self,
        prompt_ids_list: Sequence[Sequence[int]],
        completion_ids_list: Sequence[Sequence[int]],
        *,
        temperature: float = 1.0,
        batch_size: int = 16,
    ) -> Tensor: ...


class FrozenReference:
    """A frozen model (by default a deep copy of the policy's LM taken at the start)."""

    def __init__(self, model: nn.Module, *, share_prompts: bool = True) -> None:
        self.model = causal_lm(model)
        self.share_prompts = share_prompts
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @classmethod
    def copy_of(cls, policy: nn.Module, *, share_prompts: bool = True) -> FrozenReference:
        return cls(copy.deepcopy(causal_lm(policy)), share_prompts=share_prompts)

    def logprobs(
        self,
        prompt_ids_list: Sequence[Sequence[int]],
        completion_ids_list: Sequence[Sequence[int]],
        *,
        temperature: float = 1.0,
        batch_size: int = 16,
    ) -> Tensor:
        return token_logprobs(
            self.model,
            prompt_ids_list,
            completion_ids_list,
            temperature=temperature,
            batch_size=batch_size,
            share_prompts=self.share_prompts,
        )


class AdapterDisabledReference:
    """The policy's own base weights with its LoRA adapter switched off: no second copy."""

    def __init__(self, peft_model: nn.Module, *, share_prompts: bool = True) -> None:
        lm = causal_lm(peft_model)
        self.share_prompts = share_prompts
        if not is_peft_model(lm):
            raise ConfigError(
                f"AdapterDisabledReference needs a peft model, got {type(lm).__name__}; use "
                "FrozenReference for a model without a LoRA adapter"
            )
        self.model = lm

    def _disabled(self) -> AbstractContextManager[Any]:
        return self.model.disable_adapter()  # type: ignore[no-any-return,operator]

    def logprobs(
        self,
        prompt_ids_list: Sequence[Sequence[int]],
        completion_ids_list: Sequence[Sequence[int]],
        *,
        temperature: float = 1.0,
        batch_size: int = 16,
    ) -> Tensor:
        with self._disabled():
            return token_logprobs(
                self.model,
                prompt_ids_list,
                completion_ids_list,
                temperature=temperature,
                batch_size=batch_size,
                share_prompts=self.share_prompts,
            )


def make_reference(policy: nn.Module, *, share_prompts: bool = True) -> Reference:
    """The default reference for ``policy``: adapter-disabled for a LoRA model, else a
    frozen deep copy."""
    if is_peft_model(causal_lm(policy)):
        return AdapterDisabledReference(policy, share_prompts=share_prompts)
    return FrozenReference.copy_of(policy, share_prompts=share_prompts)


# ------------------------------------------------------------------------------ LoRA
@dataclass(frozen=True)
class LoRAConfig:
    """LoRA adapter settings (see ``peft.LoraConfig``)."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | str = "all-linear"

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoRAConfig.r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"LoRAConfig.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoRAConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("LoRAConfig.target_modules must name at least one module")


def _import_peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise ConfigError(
            "LoRA needs the peft package, which is not installed; fix: pip install peft "
            "(or pip install 'brite[lora]')"
        ) from exc
    return peft


def apply_lora(lm: nn.Module, config: LoRAConfig | None = None) -> nn.Module:
    """Wrap ``lm`` with a trainable LoRA adapter (base weights frozen)."""
    peft = _import_peft()
    config = config or LoRAConfig()
    target = (
        config.target_modules
        if isinstance(config.target_modules, str)
        else list(config.target_modules)
    )
    lora = peft.LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=target,
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(lm, lora)  # type: ignore[no-any-return]
