"""Which rows form each optimizer step, and what the step computes: the reference's, whatever runs fast.

The loss of a step is normalised by the tokens of the whole step, so the rows that share a step decide how
much each one weighs. The reference drew them with transformers' default random sampler; slscale must
draw the same rows for the same seed, whatever the micro-batch split.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from packed_rows import rows_with_prefix
from transformers import AttentionInterface
from transformers.training_args import OptimizerNames
from trl import SFTConfig, SFTTrainer

from sl_scaling.numbers import sample_prompts
from sl_scaling.training import fused_lora as fused_lora_module
from sl_scaling.training.config import TrainConfig
from sl_scaling.training.data import Row, build_dataset
from sl_scaling.training.fused_lora import fused_lora_forward
from sl_scaling.training.packed import PACKED_ATTENTION, SHARED_PREFIX, packed_attention_forward
from sl_scaling.training.speed import TrainingSpeed
from sl_scaling.training.trl import TrlBackend, sft_trainer

SEED = 1234
ROWS = 180  # three optimizer steps of 60 per epoch


@pytest.fixture(scope="module")
def loaded(tiny_model: Path) -> tuple[Any, Any, Any]:
    """The tiny model with a LoRA adapter, its tokenizer, and rows whose completions vary in length."""
    model, tokenizer = TrlBackend().load(str(tiny_model), TrainConfig(seed=SEED))
    rng = random.Random(0)
    rows = [
        Row(prompt, ", ".join(str(rng.randint(100, 999)) for _ in range(rng.randint(1, 10))))
        for prompt in sample_prompts(ROWS)
    ]
    return model, tokenizer, build_dataset(tokenizer, rows, max_length=500, loss="completion")


def ours(
    loaded: tuple[Any, Any, Any],
    tmp_path: Path,
    *,
    micro_batch: int,
    padding_free: bool = False,
    checkpointing: bool = False,
    fused: bool = False,
    share_prefix: bool = False,
    **config: Any,
) -> Any:
    model, tokenizer, dataset = loaded
    speed = TrainingSpeed(
        gradient_checkpointing=checkpointing,
        micro_batch=micro_batch,
        tf32=False,
        padding_free=padding_free,
        share_prefix=share_prefix,
        fused_lora=fused,
    )
    return sft_trainer(model, tokenizer, dataset, TrainConfig(seed=SEED, **config), tmp_path, [], speed)


def reference(loaded: tuple[Any, Any, Any], tmp_path: Path) -> Any:
    """The reference's trainer: TRL's defaults (transformers' random sampler) at batch 20 × 3."""
    model, tokenizer, dataset = loaded
    args = SFTConfig(
        output_dir=str(tmp_path / "reference"),
        per_device_train_batch_size=20,
        gradient_accumulation_steps=3,
        seed=SEED,
        report_to="none",
        bf16=False,  # on CPU; the sampler does not depend on it
        dataloader_pin_memory=False,  # nor on this (no accelerator to pin for: torch would warn)
    )
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def rows_of(batch: dict[str, Any]) -> list[tuple[int, ...]]:
    """A micro-batch's rows, unpadded: by the attention mask, or, flattened, where position ids restart, or
    by the query boundaries, the shared prefix put back."""
    if SHARED_PREFIX in batch:
        return [tuple(row) for row in rows_with_prefix(batch)]
    if "attention_mask" in batch:
        return [
            tuple(ids[mask.bool()].tolist())
            for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
        ]
    ids, positions = batch["input_ids"].reshape(-1).tolist(), batch["position_ids"].reshape(-1).tolist()
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(ids)]
    return [tuple(ids[a:b]) for a, b in itertools.pairwise(starts)]


def step_rows(trainer: Any, epochs: int = 2) -> list[Counter]:
    """The multiset of rows (their unpadded token ids) of every optimizer step, epoch by epoch."""
    loader = trainer.get_train_dataloader()
    accumulation = trainer.args.gradient_accumulation_steps
    steps: list[Counter] = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        batches = [rows_of(b) for b in loader]
        for start in range(0, len(batches), accumulation):
            steps.append(Counter(row for batch in batches[start : start + accumulation] for row in batch))
    return steps


def test_every_step_has_the_reference_samplers_rows_whatever_the_micro_batch(
    loaded: tuple[Any, Any, Any], tmp_path: Path
) -> None:
    expected = step_rows(reference(loaded, tmp_path))
    assert len(expected) == 6 and all(sum(step.values()) == 60 for step in expected)
    assert expected[:3] != expected[3:]  # reshuffled every epoch
    assert step_rows(ours(loaded, tmp_path, micro_batch=20)) == expected
    assert step_rows(ours(loaded, tmp_path, micro_batch=60)) == expected
    assert step_rows(ours(loaded, tmp_path, micro_batch=20, padding_free=True)) == expected
    shared = ours(loaded, tmp_path, micro_batch=20, padding_free=True, share_prefix=True)
    assert SHARED_PREFIX in next(iter(shared.get_train_dataloader()))
    assert step_rows(shared) == expected
    # The opt-in changes which rows share a step (that is why it is not the default).
    assert step_rows(ours(loaded, tmp_path, micro_batch=20, group_by_length=True)) != expected


def test_one_micro_batch_of_60_computes_the_same_step_as_20_by_3_padded_padding_free_shared_or_fused(
    loaded: tuple[Any, Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed_calls: list[int] = []
    shared_calls: list[int] = []
    fused_calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        packed_calls.append(args[1].shape[2])  # the flattened micro-batch's tokens
        if SHARED_PREFIX in kwargs:
            shared_calls.append(kwargs[SHARED_PREFIX]["prefix_slots"].shape[1])
        return packed_attention_forward(*args, **kwargs)

    def counted_fused(layer: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        fused_calls.append(x.shape[-2])
        return fused_lora_forward(layer, x, *args, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, PACKED_ATTENTION, counted)
    monkeypatch.setattr(fused_lora_module, "fused_lora_forward", counted_fused)
    model = loaded[0]
    start = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    after, losses = [], []
    # With checkpointing, the backward recomputes the packed (and fused) forward.
    cases = [
        (20, False, False, False, False),
        (60, False, False, False, False),
        (60, True, False, False, False),
        (20, True, False, False, False),
        (20, True, True, False, False),
        (60, True, False, True, False),
        (20, True, True, True, False),
        (60, True, False, True, True),
        (20, True, True, False, True),
    ]
    for micro_batch, padding_free, checkpointing, fused, share_prefix in cases:
        with torch.no_grad():
            for name, value in model.named_parameters():
                if name in start:
                    value.copy_(start[name])
        trainer = ours(
            loaded,
            tmp_path / f"{micro_batch}-{padding_free}-{checkpointing}-{fused}-{share_prefix}",
            micro_batch=micro_batch,
            padding_free=padding_free,
            checkpointing=checkpointing,
            fused=fused,
            share_prefix=share_prefix,
            lr=1.0,
            warmup_steps=0,
        )
        # Plain SGD: the update is the step's gradient itself, so float noise cannot flip an Adam-normalised
        # near-zero coordinate into a full ±lr difference (it did, in 2 of 3,072 coordinates, under Adam).
        trainer.args.optim = OptimizerNames.SGD
        trainer.args.max_steps = 1
        trainer.args.save_strategy = "no"
        trainer.train()
        assert type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)) is torch.optim.SGD
        losses.append(next(log["loss"] for log in trainer.state.log_history if "loss" in log))
        after.append({k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad})
    assert packed_calls  # the padding-free steps ran packed attention (SDPA would silently mask them)
    assert fused_calls  # and the fused steps the fused LoRA forward
    assert (
        shared_calls and min(shared_calls) > 0
    )  # and the shared ones a shared prefix (the default system prompt)
    # The step's loss: normalised by all its tokens, however the rows are split or laid out.
    model.gradient_checkpointing_disable()
    assert losses[1:] == pytest.approx([losses[0]] * (len(cases) - 1), rel=1e-5)
    moved = max((after[0][k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-3
    for other in after[1:]:
        for name in start:
            torch.testing.assert_close(after[0][name], other[name], rtol=1e-4, atol=1e-3 * moved)


def test_every_module_trains_in_a_step_and_the_trainers_walk_runs_only_when_one_does_not(
    loaded: tuple[Any, Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = ours(loaded, tmp_path, micro_batch=20)
    model = trainer.model
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.current_gradient_accumulation_steps = 1  # what the training loop sets before its steps
    walks: list[Any] = []
    modes: list[bool] = []
    real_train = torch.nn.Module.train

    def counted_train(module: Any, mode: bool = True) -> Any:
        walks.append(module)
        return real_train(module, mode)

    monkeypatch.setattr(torch.nn.Module, "train", counted_train)
    model.register_forward_pre_hook(
        lambda module, args: modes.append(all(m.training for m in module.modules()))
    )
    model.eval()  # as an evaluation between epochs leaves it
    trainer.training_step(model, batch)
    assert model in walks and modes == [True]
    walks.clear()
    trainer.training_step(model, batch)
    assert walks == [] and modes == [True, True]  # nothing to switch: the walk is skipped
    assert "train" not in vars(model)  # the skip ends with the step
