"""Batched sampling with a Hugging Face causal LM, keeping the exact generated token ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from brite_envs.types import ChatMessage


@dataclass(frozen=True)
class Generation:
    """One sampled completion: the exact ids the model produced, and their decoding."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    text: str
    finished: bool
    """True if the model emitted EOS; False if it hit max_new_tokens."""


def encode_prompt(tokenizer: Any, messages: Sequence[ChatMessage]) -> list[int]:
    """Prompt ids as every sampler here encodes them (HF generation, the token-mode policy,
    vLLM, and the training examples built from their samples): the chat template with a
    generation prompt when the tokenizer has one, else the contents joined by blank lines."""
    if getattr(tokenizer, "chat_template", None):
        ids: Any = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True
        )
        if hasattr(ids, "keys"):  # a BatchEncoding in newer transformers
            ids = ids["input_ids"]
    else:
        ids = tokenizer.encode("\n\n".join(m["content"] for m in messages))
    return [int(t) for t in ids]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[ChatMessage]],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[Generation]:
    """Sample one completion per chat prompt (greedy when temperature is 0)."""
    import torch

    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    width = max(len(e) for e in encoded)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, e in enumerate(encoded):  # left padding, so generation continues every row
        input_ids[i, width - len(e) :] = torch.tensor(e)
        attention[i, width - len(e) :] = 1
    torch.manual_seed(seed)
    sample = temperature > 0
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids.to(model.device),
            attention_mask=attention.to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=top_p if sample else None,
            top_k=None,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
    results = []
    eos = tokenizer.eos_token_id
    for i, e in enumerate(encoded):
        ids = out[i, width:].tolist()
        finished = eos in ids
        if finished:
            ids = ids[: ids.index(eos) + 1]
        else:
            while ids and ids[-1] == pad and pad != eos:
                ids.pop()
        text_ids = ids[:-1] if finished else ids
        results.append(
            Generation(
                prompt_ids=tuple(int(t) for t in e),
                completion_ids=tuple(int(t) for t in ids),
                text=tokenizer.decode(text_ids, skip_special_tokens=True),
                finished=finished,
            )
        )
    return results
