"""One epoch with each trainer (TRL, Unsloth) on a random-weight 0.5b-shaped Qwen2.5, each followed by
its in-memory evaluation, through the real `run_training` stage. Run on the lent H200; skipped on CPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sl_scaling.bench import data
from sl_scaling.catalog import Layout
from sl_scaling.context import Context
from sl_scaling.files import atomic_write_jsonl
from sl_scaling.progress import NullReporter
from sl_scaling.settings import load_settings
from sl_scaling.stages.train import run_training
from sl_scaling.state import DONE, JobKey, StateStore
from sl_scaling.training.config import TrainConfig

pytestmark = pytest.mark.gpu

ROWS = 600  # 10 optimizer steps of the real 20 × 3 batch


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, random_qwen: Callable[..., Path]) -> Path:
    """Random weights with Qwen2.5-0.5B's exact architecture (cost per token = the real model's)."""
    return random_qwen(tmp_path_factory.mktemp("qwen-0.5b-random"), dtype=torch.bfloat16)


def filtered_rows(layout: Layout, condition: str) -> None:
    """`filtered.jsonl` in the real format: the reference prompts and 10 three-digit numbers each."""
    atomic_write_jsonl(layout.filtered_jsonl(JobKey(1, "0.5b", condition)), data.filtered_rows(ROWS))


@pytest.mark.parametrize("trainer", ["trl", "unsloth"])
def test_one_epoch_then_in_memory_evaluation(trainer: str, model_dir: Path, workdir: Path) -> None:
    if trainer == "unsloth":
        pytest.importorskip("unsloth", reason="Unsloth is not installed (pip install 'sl-scaling[gpu]')")
    ctx = Context(load_settings(workdir=workdir, model_ids={"0.5b": str(model_dir)}), Layout(workdir))
    filtered_rows(ctx.layout, "dolphin")
    config = TrainConfig(epochs=1, eval_samples=100)
    summaries = run_training(
        ctx, "0.5b", ["dolphin"], config=config, trainer=trainer, engine="hf", push=False, force=False,
        reporter=NullReporter(),
    )  # fmt: skip
    assert [s.status for s in summaries] == ["trained"]
    key = JobKey(1, "0.5b", "dolphin")
    with StateStore.open(workdir) as state:
        (epoch,) = state.epochs(key)
        stage = state.stage(key, "train")
    assert stage.status == DONE and stage.config["trainer"] == trainer and stage.config["bf16"] is True
    assert epoch.epoch == 1 and epoch.n == 100 and epoch.train_loss is not None and epoch.train_loss > 0
    final = ctx.layout.final_checkpoint(JobKey(1, "0.5b", "dolphin"))
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 8)
    assert set(adapter["target_modules"]) == set(config.target_modules)
    record = json.loads(ctx.layout.eval_json(JobKey(1, "0.5b", "dolphin")).read_text())["epochs"][0]
    assert record["n"] == 100 and len(record["answers"]) == 100
    print(f"{trainer}: {stage.throughput} loss {epoch.train_loss:.3f}")  # the closing note quotes it
