"""The ``tiny`` model preset: a few-million-parameter Llama built from a config with a BPE
tokenizer trained locally by ``tokenizers``. No download; for tests and smoke runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ("<|pad|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>")


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 600) -> Any:
    """A byte-level BPE tokenizer trained on ``corpus``, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>")
    hf.chat_template = CHAT_TEMPLATE
    return hf


def arith_corpus(size: int = 300) -> list[str]:
    """Prompts, rationales and answers of Arith training problems: the tiny tokenizer's corpus."""
    from brite_envs.tasks.arith import Arith

    task = Arith(split="train", size=size)
    corpus: list[str] = []
    for p in task.problems:
        corpus += [task.render_prompt(p), task.render_hinted_prompt(p), p.rationale or ""]
    return corpus


def build_tiny(
    *, hidden_size: int = 64, layers: int = 2, heads: int = 4, vocab_size: int = 600, seed: int = 0
) -> tuple[Any, Any]:
    """A randomly initialised tiny Llama and its locally trained tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(arith_corpus(), vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return model, tokenizer
