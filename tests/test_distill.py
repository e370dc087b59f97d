"""θ-update distillation on TRL: SFT and DPO train on exactly the token ids given, SFT's loss is
on the completion only, and make_pairs/configs behave."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from agents.distill import (  # noqa: E402
    DPOSettings,
    GradedSample,
    PreferencePair,
    SFTExample,
    SFTSettings,
    completion_logprob,
    dpo,
    encode_completion,
    encode_prompt,
    make_pairs,
    sft,
    text_example,
    text_pair,
)
from agents.errors import ConfigError  # noqa: E402
from brite_envs.tasks.arith import Arith  # noqa: E402


@pytest.fixture(scope="module")
def task() -> Arith:
    return Arith(split="train", size=16)


@pytest.fixture()
def model(tiny: tuple[Any, Any]) -> Any:
    """A fresh copy of the tiny model for each test (training is in place)."""
    return copy.deepcopy(tiny[0])


@pytest.fixture()
def tok(tiny: tuple[Any, Any]) -> Any:
    return tiny[1]


@contextmanager
def recording_inputs(model: Any) -> Iterator[list[dict[str, Any]]]:
    """Record the tensors each training forward receives (input_ids, attention_mask, labels)."""
    calls: list[dict[str, Any]] = []

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if kwargs.get("fused_lm_head"):
            calls.append({k: v.detach().clone() for k, v in kwargs.items() if torch.is_tensor(v)})

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def rows(batch: dict[str, Any]) -> list[list[int]]:
    """The unpadded rows of a right-padded batch."""
    return [
        ids[mask.bool()].tolist()
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
    ]


def rationale_examples(tok: Any, task: Arith) -> list[SFTExample]:
    return [text_example(tok, task.render_messages(p), p.rationale or "") for p in task.problems]


def mean_completion_nll(model: Any, examples: list[SFTExample]) -> float:
    total = sum(-completion_logprob(model, e.prompt_ids, e.completion_ids) for e in examples)
    return total / sum(len(e.completion_ids) for e in examples)


# -- SFT ---------------------------------------------------------------------------------------
def test_sft_lowers_completion_loss_and_raises_target_logprob(
    model: Any, tok: Any, task: Arith
) -> None:
    examples = rationale_examples(tok, task)
    before = [completion_logprob(model, e.prompt_ids, e.completion_ids) for e in examples]
    settings = SFTSettings(learning_rate=3e-3, epochs=4, batch_size=8)
    trained, metrics = sft(model, tok, examples, settings)

    assert trained is model
    assert not model.training
    assert "forward" not in model.__dict__, "TRL's fused-head patch must be undone"
    after = [completion_logprob(model, e.prompt_ids, e.completion_ids) for e in examples]
    assert sum(after) > sum(before) + 100
    assert sum(a > b for a, b in zip(after, before, strict=True)) == len(examples)
    assert metrics.kind == "sft"
    assert metrics.loss_first is not None and metrics.loss_last is not None
    assert metrics.loss_last < metrics.loss_first - 0.5
    assert (metrics.examples, metrics.skipped, metrics.steps, metrics.epochs) == (16, 0, 8, 4)
    assert metrics.completion_tokens == sum(len(e.completion_ids) for e in examples)
    assert metrics.total_tokens == sum(len(e.prompt_ids + e.completion_ids) for e in examples)
    assert metrics.trained_completion_tokens == 4 * metrics.completion_tokens


def test_sft_trains_exact_ids_with_loss_on_completion_only(
    model: Any, tok: Any, task: Arith
) -> None:
    examples = rationale_examples(tok, task)[:6]
    # A completion spelled one character per token: decoding and re-encoding merges them.
    text = "10 + 17 = 27"
    odd_ids = (*tok.convert_tokens_to_ids(list(text.replace(" ", "Ġ"))), tok.eos_token_id)
    assert tok.unk_token_id not in odd_ids
    assert encode_completion(tok, tok.decode(odd_ids[:-1])) != odd_ids
    examples.append(SFTExample(examples[0].prompt_ids, odd_ids))
    expected_loss = mean_completion_nll(model, examples)
    full_nll = _full_sequence_nll(model, examples)

    settings = SFTSettings(learning_rate=1e-3, epochs=1, batch_size=len(examples))
    with recording_inputs(model) as calls:
        _, metrics = sft(model, tok, examples, settings)

    assert len(calls) == 1
    batch = calls[0]
    fed = sorted(rows(batch))
    assert fed == sorted(list(e.prompt_ids + e.completion_ids) for e in examples)
    for ids, labels, mask in zip(
        batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
    ):
        row = ids[mask.bool()].tolist()
        example = next(e for e in examples if list(e.prompt_ids + e.completion_ids) == row)
        n_prompt = len(example.prompt_ids)
        assert (labels[:n_prompt] == -100).all(), "prompt tokens must carry no loss"
        assert labels[n_prompt : len(row)].tolist() == list(example.completion_ids)
    # The loss TRL reports before the first update is the completion-only NLL of these ids.
    assert metrics.loss_first == pytest.approx(expected_loss, rel=1e-4)
    assert full_nll != pytest.approx(expected_loss, rel=1e-3)  # prompts in the loss would show


def _full_sequence_nll(model: Any, examples: list[SFTExample]) -> float:
    total, count = 0.0, 0
    for e in examples:
        ids = e.prompt_ids + e.completion_ids
        total -= completion_logprob(model, ids[:1], ids[1:])
        count += len(ids) - 1
    return total / count


def test_sft_is_deterministic_under_a_seed_and_forwards_logs(
    tiny: tuple[Any, Any], tok: Any, task: Arith
) -> None:
    examples = rationale_examples(tok, task)[:6]
    settings = SFTSettings(learning_rate=1e-3, epochs=2, batch_size=2, seed=3)
    logs: list[tuple[int, dict[str, float]]] = []
    first = sft(
        copy.deepcopy(tiny[0]),
        tok,
        examples,
        settings,
        on_log=lambda s, v: logs.append((s, dict(v))),
    )
    second = sft(copy.deepcopy(tiny[0]), tok, examples, settings)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.metrics.loss_last == second.metrics.loss_last
    assert [step for step, _ in logs] == list(range(1, 7))
    assert logs[0][1]["loss"] == first.metrics.loss_first
    assert all("learning_rate" in v for _, v in logs)


def test_sft_skips_examples_whose_prompt_fills_max_length(model: Any, tok: Any) -> None:
    long = SFTExample(tuple(range(20, 30)), (40, 41))
    short = SFTExample((20, 21, 22), (40, 41, 42, 43, 44, 45, 46, 47, 48))
    settings = SFTSettings(learning_rate=1e-3, max_length=10, batch_size=2)
    with recording_inputs(model) as calls:
        _, metrics = sft(model, tok, [long, short], settings)
    assert (metrics.examples, metrics.skipped) == (1, 1)
    assert rows(calls[0]) == [[20, 21, 22, 40, 41, 42, 43, 44, 45, 46]]  # cut at max_length
    assert (metrics.completion_tokens, metrics.total_tokens) == (7, 10)


def test_sft_with_no_examples_leaves_the_model_unchanged(model: Any, tok: Any) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained, metrics = sft(model, tok, [], SFTSettings())
    assert trained is model
    assert (metrics.examples, metrics.steps, metrics.loss_first) == (0, 0, None)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_ids_outside_the_vocabulary_are_refused(model: Any, tok: Any) -> None:
    vocab = model.get_input_embeddings().num_embeddings
    with pytest.raises(ConfigError, match=f"outside the model's vocabulary of {vocab}"):
        sft(model, tok, [SFTExample((1, 2), (vocab + 5,))], SFTSettings())


# -- text helpers ------------------------------------------------------------------------------
def test_text_example_matches_the_generation_prompt_and_ends_in_eos(
    model: Any, tok: Any, task: Arith
) -> None:
    from agents.generate import generate

    problem = task.problems[0]
    messages = task.render_messages(problem)
    [gen] = generate(model, tok, [messages], max_new_tokens=1)
    example = text_example(tok, messages, problem.rationale or "")
    assert example.prompt_ids == gen.prompt_ids == encode_prompt(tok, messages)
    assert example.completion_ids[-1] == tok.eos_token_id
    assert tok.decode(example.completion_ids[:-1]) == problem.rationale
    pair = text_pair(tok, messages, "right \\boxed{27}", "wrong \\boxed{28}")
    assert pair.prompt_ids == example.prompt_ids
    assert pair.chosen_ids[-1] == pair.rejected_ids[-1] == tok.eos_token_id


# -- DPO ---------------------------------------------------------------------------------------
def _margin(model: Any, pairs: list[PreferencePair]) -> float:
    return sum(
        completion_logprob(model, p.prompt_ids, p.chosen_ids)
        - completion_logprob(model, p.prompt_ids, p.rejected_ids)
        for p in pairs
    )


def test_dpo_raises_the_chosen_minus_rejected_margin_on_exact_ids(
    model: Any, tok: Any, task: Arith
) -> None:
    pairs = [
        text_pair(tok, task.render_messages(p), p.rationale or "", task.wrong_completion(p))
        for p in task.problems[:8]
    ]
    before = _margin(model, pairs)
    settings = DPOSettings(learning_rate=1e-3, epochs=3, batch_size=4, beta=0.1)
    with recording_inputs(model) as calls:
        trained, metrics = dpo(model, None, tok, pairs, settings)

    assert trained is model and not model.training
    assert "forward" not in model.__dict__
    assert _margin(model, pairs) > before + 20
    assert metrics.kind == "dpo"
    assert (metrics.examples, metrics.steps) == (8, 6)
    assert metrics.margin_first == pytest.approx(0.0, abs=1e-6)  # policy == reference at start
    assert metrics.margin_last is not None and metrics.margin_last > 0
    assert metrics.loss_first == pytest.approx(math.log(2), rel=1e-4)
    assert metrics.completion_tokens == sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    # Every training forward holds prompt+chosen then prompt+rejected rows, exactly these ids.
    expected = {tuple(p.prompt_ids + p.chosen_ids) for p in pairs} | {
        tuple(p.prompt_ids + p.rejected_ids) for p in pairs
    }
    seen = {tuple(r) for batch in calls for r in rows(batch)}
    assert seen == expected


def test_dpo_with_an_explicit_reference_leaves_it_untouched(
    model: Any, tok: Any, task: Arith
) -> None:
    ref = copy.deepcopy(model)
    ref_state = {k: v.clone() for k, v in ref.state_dict().items()}
    pairs = [
        text_pair(tok, task.render_messages(p), p.rationale or "", task.wrong_completion(p))
        for p in task.problems[:2]
    ]
    dpo(model, ref, tok, pairs, DPOSettings(learning_rate=1e-3, batch_size=2))
    assert all(torch.equal(ref_state[k], v) for k, v in ref.state_dict().items())
    assert "forward" not in ref.__dict__
    assert not all(torch.equal(ref_state[k], v) for k, v in model.state_dict().items())


# -- make_pairs --------------------------------------------------------------------------------
def _samples(prompt: tuple[int, ...], verdicts: list[bool]) -> list[GradedSample]:
    return [GradedSample(prompt, (10 + i, 99), ok) for i, ok in enumerate(verdicts)]


def test_make_pairs_is_deterministic_and_pairs_correct_with_incorrect() -> None:
    data = {
        "b": _samples((1, 2), [True, False, True, False, False]),
        "a": _samples((3,), [False, True, False]),
    }
    first = make_pairs(data, pairs_per_prompt=3, seed=7)
    assert first == make_pairs(dict(reversed(list(data.items()))), pairs_per_prompt=3, seed=7)
    assert len(first) == 2 + 3  # "a" has only 1 x 2 combinations
    assert [p.prompt_ids for p in first] == [(3,)] * 2 + [(1, 2)] * 3
    correct = {s.completion_ids for v in data.values() for s in v if s.correct}
    wrong = {s.completion_ids for v in data.values() for s in v if not s.correct}
    assert all(p.chosen_ids in correct and p.rejected_ids in wrong for p in first)
    assert len({(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in first}) == len(first)
    seeds = {tuple(make_pairs(data, pairs_per_prompt=2, seed=s)) for s in range(10)}
    assert len(seeds) > 1, "the seed must matter"


def test_make_pairs_needs_both_a_correct_and_an_incorrect_sample() -> None:
    data = {
        "all-right": _samples((1,), [True, True]),
        "all-wrong": _samples((2,), [False, False, False]),
        "empty": [],
    }
    assert make_pairs(data) == []
    dupes = {"p": [GradedSample((1,), (5,), True), GradedSample((1,), (5,), True)]}
    dupes["p"].append(GradedSample((1,), (6,), False))
    assert len(make_pairs(dupes, pairs_per_prompt=5)) == 1  # duplicates collapse


def test_make_pairs_rejects_mixed_prompts_and_bad_counts() -> None:
    mixed = {"p": [GradedSample((1,), (5,), True), GradedSample((2,), (6,), False)]}
    with pytest.raises(ValueError, match="different prompt_ids"):
        make_pairs(mixed)
    with pytest.raises(ValueError, match="pairs_per_prompt must be >= 1, got 0"):
        make_pairs({}, pairs_per_prompt=0)


# -- configs and value types -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"learning_rate": 0.0}, "learning_rate must be > 0, got 0.0"),
        ({"epochs": 0}, "epochs must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be an int >= 1, got 2.5"),
        ({"max_length": 0}, "max_length must be an int >= 1, got 0"),
        ({"warmup_ratio": 1.0}, r"warmup_ratio must be in \[0, 1\), got 1.0"),
        ({"precision": "fp8"}, "precision must be one of .* got 'fp8'"),
        ({"lr_scheduler": "step"}, "lr_scheduler must be one of .* got 'step'"),
        ({"seed": -1}, "seed must be an int >= 0, got -1"),
    ],
)
def test_sft_settings_reject_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SFTSettings(**kwargs)


def test_dpo_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match=r"DPOSettings.beta must be > 0, got -0.1"):
        DPOSettings(beta=-0.1)
    with pytest.raises(ValueError, match=r"loss_type must be one of .* got 'kto'"):
        DPOSettings(loss_type="kto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"DPOSettings.epochs must be an int >= 1, got 0"):
        DPOSettings(epochs=0)


def test_gpu_precision_on_cpu_is_a_config_error(model: Any, tok: Any) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="precision=float32"):
        sft(model, tok, [SFTExample((1, 2), (3,))], SFTSettings(precision="bfloat16"))


def test_value_types_validate_ids() -> None:
    with pytest.raises(ValueError, match="completion_ids must not be empty"):
        SFTExample((1,), ())
    with pytest.raises(ValueError, match="negative token ids"):
        SFTExample((1,), (-3,))
    with pytest.raises(ValueError, match="identical"):
        PreferencePair((1,), (2, 3), (2, 3))
    example = SFTExample([1, 2], [3])  # type: ignore[arg-type]
    assert example.prompt_ids == (1, 2) and example.completion_ids == (3,)
