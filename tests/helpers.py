"""Test helpers: a real BPE tokenizer trained locally with ``tokenizers`` (no download)."""

from __future__ import annotations

from functools import lru_cache

from brite_envs.tasks.arith import Arith

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@lru_cache(maxsize=1)
def tiny_hf_tokenizer():  # type: ignore[no-untyped-def]
    """A byte-level BPE tokenizer (vocab ~600) trained on Arith text, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = []
    task = Arith(split="train", size=300)
    for p in task.problems:
        corpus += [task.render_prompt(p), p.rationale or "", task.reference_completion(p)]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>"
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf
