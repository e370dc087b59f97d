"""VLLMPolicy: rollouts sampled by vLLM behind the :class:`~agents.policy.Policy` interface.

vLLM has no CPU wheel and is only in the GPU extra (``pip install 'brite[vllm]'`` on a CUDA
machine), so it is imported lazily: importing this module always works, and constructing a
:class:`VLLMPolicy` without vLLM raises :class:`VLLMUnavailableError` saying how to get it.

The engine runs in this process, colocated with training (as TRL 1.16's ``vllm_mode=
"colocate"`` does): prompts go in as token ids, completions come back as exact ids with
the sampled token's log-prob (``SamplingParams(logprobs=0)``; ``logprobs_mode=
"processed_logprobs"`` so they are taken after temperature scaling, like
:func:`agents.policy.sample_from_logits`). :meth:`VLLMPolicy.sync_weights` streams the
trained Hugging Face weights into the engine's model after each update.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from agents.errors import AgentError, ConfigError
from agents.policy import (
    Sample,
    causal_lm,
    check_sampling,
    check_seeds,
    encode_messages,
    is_peft_model,
)
from brite_envs.types import ChatMessage

__all__ = ["VLLM_INSTALL_HINT", "VLLMPolicy", "VLLMUnavailableError", "vllm_unavailable_reason"]

VLLM_INSTALL_HINT = (
    "VLLMPolicy needs vLLM, which is not installed; fix: pip install 'brite[vllm]' on a "
    "machine with a CUDA GPU (vLLM has no CPU wheel), or use agents.policy.HFPolicy"
)


class VLLMUnavailableError(AgentError, ImportError):
    """vLLM (or a CUDA GPU for it) is missing."""


def vllm_unavailable_reason() -> str | None:
    """Why a VLLMPolicy cannot run here (no vllm package, no CUDA GPU), or None."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (GPU-only extra: pip install 'brite[vllm]')"
    import torch

    if not torch.cuda.is_available():
        return "vllm is installed but no CUDA GPU is available"
    return None


def _import_vllm() -> Any:
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise VLLMUnavailableError(VLLM_INSTALL_HINT) from exc


class VLLMPolicy:
    """Sample with a colocated vLLM engine; follow the trained model with ``sync_weights``.

    Args:
        model: a Hugging Face folder or hub id vLLM can load (the same weights the HF
            trainer starts from).
        tokenizer: the policy's tokenizer (for chat templates and decoding).
        stop_ids: ids that end a completion; default the tokenizer's EOS id, as the
            token-mode envs use.
        gpu_memory_utilization: the share of GPU memory vLLM may take (the trainer needs
            the rest).
        llm_kwargs: passed to ``vllm.LLM`` (e.g. ``dtype``, ``max_model_len``,
            ``enforce_eager``).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        tokenizer: Any,
        *,
        stop_ids: Iterable[int] | None = None,
        gpu_memory_utilization: float = 0.3,
        seed: int = 0,
        **llm_kwargs: Any,
    ) -> None:
        vllm = _import_vllm()
        if not 0 < gpu_memory_utilization <= 1:
            raise ConfigError(
                f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}"
            )
        self.tokenizer = tokenizer
        ids = set(stop_ids) if stop_ids is not None else {tokenizer.eos_token_id}
        ids.discard(None)
        if not ids:
            raise ConfigError("VLLMPolicy needs a stop id: the tokenizer has no eos_token_id")
        self.stop_ids = frozenset(int(t) for t in ids)
        # The external launcher keeps the engine (and its model) in this process, so weights
        # can be loaded into it directly; it needs the torch.distributed variables set.
        for key, value in (
            ("RANK", "0"),
            ("LOCAL_RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29533"),
        ):
            os.environ.setdefault(key, value)
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=os.fspath(model),
            gpu_memory_utilization=gpu_memory_utilization,
            distributed_executor_backend="external_launcher",
            logprobs_mode="processed_logprobs",
            seed=seed,
            **llm_kwargs,
        )

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
        check_seeds(len(prompt_ids_batch), seed, seeds)
        row_seeds: list[int | None] = list(seeds) if seeds is not None else []
        if seeds is None:  # repeated prompts (k samples per problem) still differ
            row_seeds = [None if seed is None else seed + i for i in range(len(prompt_ids_batch))]
        # One SamplingParams per prompt, each with its own seed.
        params = [
            self._vllm.SamplingParams(
                n=1,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_new_tokens,
                logprobs=0,
                stop_token_ids=sorted(self.stop_ids),
                seed=None if row_seed is None else int(row_seed),
                detokenize=False,
            )
            for row_seed in row_seeds
        ]
        prompts = [{"prompt_token_ids": [int(t) for t in p]} for p in prompt_ids_batch]
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        samples = []
        for prompt, output in zip(prompt_ids_batch, outputs, strict=True):
            completion = output.outputs[0]
            ids = tuple(int(t) for t in completion.token_ids)
            logprobs = tuple(
                float(step[token].logprob)
                for step, token in zip(completion.logprobs, ids, strict=True)
            )
            finished = bool(ids) and ids[-1] in self.stop_ids
            text_ids = ids[:-1] if finished else ids
            samples.append(
                Sample(
                    prompt_ids=tuple(int(t) for t in prompt),
                    completion_ids=ids,
                    logprobs=logprobs,
                    text=self.tokenizer.decode(list(text_ids), skip_special_tokens=True),
                    finished=finished,
                )
            )
        return samples

    def sync_weights(self, model: nn.Module) -> None:
        """Load ``model``'s current weights into the engine (a LoRA model is merged first,
        without changing ``model``), then drop the prefix cache computed with the old ones."""
        lm = causal_lm(model)
        engine_model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        if is_peft_model(lm):
            lm.merge_adapter()  # type: ignore[operator]
            try:
                engine_model.load_weights(_peft_merged_weights(lm))
            finally:
                lm.unmerge_adapter()  # type: ignore[operator]
        else:
            engine_model.load_weights((name, p.data) for name, p in lm.named_parameters())
        self.llm.reset_prefix_cache()


def _peft_merged_weights(lm: nn.Module) -> Iterable[tuple[str, Any]]:
    """Base-model parameter names and merged values of a peft model (adapter tensors
    dropped; the ``base_model.model.`` prefix and ``.base_layer`` removed)."""
    for name, p in lm.named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            continue
        clean = name.removeprefix("base_model.model.").replace(".base_layer", "")
        yield clean, p.data
