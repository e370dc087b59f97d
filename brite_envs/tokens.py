"""Token codecs for token-mode environments.

A token-mode env needs four things from the policy's tokenizer: the prompt as ids, the
vocabulary size, the end-of-sequence ids and a decoder. ``TokenCodec`` adapts any Hugging
Face tokenizer; ``ByteTokenizer`` is a real, download-free byte-level tokenizer used when
no policy tokenizer is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from brite_envs.errors import EnvConfigError
from brite_envs.types import ChatMessage


@runtime_checkable
class TokenizerLike(Protocol):
    """The subset of the Hugging Face tokenizer API the envs use."""

    eos_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens 0-255, plus ``<pad>`` (256) and ``<eos>`` (257).

    Lossless for any text, no vocabulary file, no download: the default for token-mode envs
    and the checker when the user does not pass their policy's tokenizer.
    """

    pad_token_id = 256
    eos_token_id = 257
    vocab_size = 258
    chat_template = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        data = bytes(int(t) for t in token_ids if 0 <= int(t) < 256)
        if not skip_special_tokens:
            names = {self.pad_token_id: "<pad>", self.eos_token_id: "<eos>"}
            out: list[str] = []
            chunk: list[int] = []
            for t in token_ids:
                if int(t) in names:
                    out.append(bytes(chunk).decode("utf-8", errors="replace") + names[int(t)])
                    chunk = []
                else:
                    chunk.append(int(t))
            out.append(bytes(chunk).decode("utf-8", errors="replace"))
            return "".join(out)
        return data.decode("utf-8", errors="replace")

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return "ByteTokenizer()"


def load_tokenizer(spec: str | os.PathLike[str] | TokenizerLike | None) -> TokenizerLike:
    """``None``/``"byte"`` → ByteTokenizer; a hub id, a folder, or a ``.gguf`` file → the
    Hugging Face tokenizer; a tokenizer object is returned unchanged."""
    if spec is None or spec == "byte":
        return ByteTokenizer()
    if not isinstance(spec, (str, os.PathLike)):
        if isinstance(spec, TokenizerLike):
            return spec
        raise EnvConfigError(
            f"tokenizer must be 'byte', a hub id, a folder, a .gguf file or a tokenizer object; "
            f"got {type(spec).__name__}"
        )
    from transformers import AutoTokenizer

    path = os.fspath(spec)
    try:
        if path.endswith(".gguf"):
            folder, name = os.path.split(os.path.abspath(path))
            return AutoTokenizer.from_pretrained(folder, gguf_file=name)  # type: ignore[no-any-return]
        return AutoTokenizer.from_pretrained(path)  # type: ignore[no-any-return]
    except (OSError, ValueError) as exc:
        raise EnvConfigError(
            f"could not load tokenizer {path!r}: {exc}. Pass a local folder, a .gguf file, "
            "a reachable hub id, or 'byte' for the built-in byte tokenizer."
        ) from exc


class TokenCodec:
    """Prompt encoding, vocabulary size, EOS ids and decoding for one tokenizer."""

    def __init__(
        self,
        tokenizer: TokenizerLike,
        *,
        vocab_size: int | None = None,
        use_chat_template: bool = True,
        extra_stop_ids: Sequence[int] = (),
    ) -> None:
        self.tokenizer = tokenizer
        n = vocab_size if vocab_size is not None else _vocab_size(tokenizer)
        if n < 2:
            raise EnvConfigError(f"vocab_size must be >= 2, got {n}")
        self.vocab_size = int(n)
        eos: set[int] = set(int(t) for t in extra_stop_ids)
        eos_id = getattr(tokenizer, "eos_token_id", None)
        if eos_id is not None:
            eos.add(int(eos_id))
        if not eos:
            raise EnvConfigError(
                f"tokenizer {tokenizer!r} has no eos_token_id; pass extra_stop_ids=[...] so "
                "token-mode episodes can end"
            )
        if max(eos) >= self.vocab_size:
            raise EnvConfigError(
                f"stop id {max(eos)} is outside the vocabulary of size {self.vocab_size}"
            )
        self.stop_ids = frozenset(eos)
        self.use_chat_template = bool(
            use_chat_template and getattr(tokenizer, "chat_template", None)
        )

    def encode_prompt(self, messages: list[ChatMessage], text: str) -> list[int]:
        """The prompt as ids: the chat template with a generation prompt when the tokenizer
        has one (and it is enabled), else the plain text."""
        if self.use_chat_template:
            ids: Any = self.tokenizer.apply_chat_template(  # type: ignore[attr-defined]
                messages, add_generation_prompt=True, tokenize=True
            )
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer HF
                ids = ids["input_ids"]
            return [int(t) for t in ids]
        return [int(t) for t in self.tokenizer.encode(text, add_special_tokens=True)]

    def encode_completion(self, text: str) -> list[int]:
        """Ids of a completion (no special tokens), e.g. to replay a known completion."""
        return [int(t) for t in self.tokenizer.encode(text, add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


def _vocab_size(tokenizer: TokenizerLike) -> int:
    try:
        return len(tokenizer)  # type: ignore[arg-type]  # HF: includes added tokens
    except TypeError:
        size = getattr(tokenizer, "vocab_size", None)
        if size is None:
            raise EnvConfigError(
                f"cannot tell the vocabulary size of {tokenizer!r}; pass vocab_size=..."
            ) from None
        return int(size)
