"""Speed knobs that must not change what is optimised: micro-batches regrouped by length within a step."""

from __future__ import annotations

from pathlib import Path

import torch

from sl_scaling.bench import data
from sl_scaling.training.config import TrainConfig
from sl_scaling.training.data import Row, build_dataset
from sl_scaling.training.speed import TrainingSpeed
from sl_scaling.training.trl import TrlBackend, sft_trainer, sort_micro_batches

PAD = 0


def right_padded(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.where(mask.bool(), ids, -100)}


def test_regrouping_keeps_every_row_and_the_micro_batch_sizes_and_cuts_padding() -> None:
    generator = torch.Generator().manual_seed(0)
    rows = [
        torch.randint(1, 100, (int(n),), generator=generator).tolist() for n in torch.randint(3, 30, (12,))
    ]
    batches = [right_padded(rows[i : i + 4]) for i in range(0, 12, 4)]
    regrouped = sort_micro_batches(batches, PAD)

    def contents(group: list[dict[str, torch.Tensor]]) -> list[tuple[int, ...]]:
        return sorted(
            tuple(b["input_ids"][i][b["attention_mask"][i].bool()].tolist())
            for b in group
            for i in range(len(b["input_ids"]))
        )

    assert contents(regrouped) == contents(batches) == sorted(tuple(r) for r in rows)
    assert [len(b["input_ids"]) for b in regrouped] == [4, 4, 4]
    for batch in regrouped:  # labels follow their row; padding is the collator's
        mask = batch["attention_mask"].bool()
        assert torch.equal(batch["labels"][mask], batch["input_ids"][mask])
        assert (batch["labels"][~mask] == -100).all() and (batch["input_ids"][~mask] == PAD).all()
    padded = sum(b["input_ids"].numel() for b in regrouped)
    assert padded < sum(b["input_ids"].numel() for b in batches)
    alone = batches[:1]
    assert sort_micro_batches(alone, PAD) is alone  # one micro-batch: nothing to regroup
    unknown = [{**b, "extra": b["labels"]} for b in batches]
    assert sort_micro_batches(unknown, PAD) is unknown  # a field it does not know how to pad: untouched


def test_regrouped_micro_batches_train_the_same_adapter(tmp_path: Path, tiny_model: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=4, grad_accum=3, max_rows=24).resolved()
    rows = [Row(r["prompt"], r["completion"]) for r in data.filtered_rows(24, seed=5)]
    adapters = []
    for regroup in (False, True):
        model, tokenizer = TrlBackend().load(str(tiny_model), config)
        dataset = build_dataset(tokenizer, rows, max_length=500, loss="completion")
        speed = TrainingSpeed(
            gradient_checkpointing=False, micro_batch=4, tf32=False, sort_micro_batches=regroup
        )
        trainer = sft_trainer(model, tokenizer, dataset, config, tmp_path / str(regroup), [], speed)
        trainer.train()
        adapters.append({k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k})
        assert trainer.sort_micro_batches is regroup and trainer.state.global_step == 2
    unsorted, regrouped = adapters
    assert unsorted.keys() == regrouped.keys() and unsorted
    for name, tensor in unsorted.items():
        torch.testing.assert_close(regrouped[name], tensor, rtol=1e-5, atol=1e-6)
