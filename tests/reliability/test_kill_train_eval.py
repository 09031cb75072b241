"""SIGKILL `train` and `eval` at the moments that matter, then run the same command again.

Train is killed (a) between an epoch's adapter save and its DB record, (b) right after an epoch is
recorded (while the Trainer writes its checkpoint or the next epoch starts); the epoch for each is
drawn per seed. The resumed run must end with each epoch exactly once, everywhere.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import (
    SEEDS,
    TINY,
    TRAIN,
    Running,
    assert_done_means_complete,
    assert_epochs_once,
    copy_workdir,
    kill_when,
    leftovers,
    recorded_epochs,
    slscale,
    stage_status,
)

from sl_scaling.catalog import Layout
from sl_scaling.state import DONE, RUNNING, JobKey

KEY = JobKey(1, TINY, "dog")
EPOCHS = int(TRAIN[TRAIN.index("--epochs") + 1])
TRAIN_ARGS = ["train", "--size", TINY, "--animal", "dog", *TRAIN]


def saved_since(workdir: Path, epoch: int, since: float) -> bool:
    """Epoch `epoch`'s adapter was (re)saved by this attempt."""
    layout = Layout(workdir)
    folder = (
        layout.final_checkpoint(JobKey(1, TINY, "dog"))
        if epoch == EPOCHS
        else layout.epoch_adapter_dir(JobKey(1, TINY, "dog"), epoch)
    )
    weights = folder / "adapter_model.safetensors"
    return weights.exists() and weights.stat().st_mtime >= since


@pytest.mark.parametrize("seed", SEEDS)
def test_train_killed_between_save_and_record_and_after_a_record_resumes_each_epoch_once(
    seed: int, workdir: Path, generated: Path, cli: Callable[..., Running]
) -> None:
    copy_workdir(generated, workdir)
    rng = random.Random(seed)
    unsaved = rng.randint(1, EPOCHS - 1)  # saved, not yet recorded (evaluation in progress)
    recorded = rng.randint(unsaved, EPOCHS - 1)  # recorded; the checkpoint/next epoch in progress

    started = time.time() - 1  # mtimes have coarse resolution on some filesystems
    running = cli(*TRAIN_ARGS)
    kill_when(
        running,
        lambda: saved_since(workdir, unsaved, started) and unsaved not in recorded_epochs(workdir, KEY),
        f"epoch {unsaved} saved, not recorded",
    )
    assert recorded_epochs(workdir, KEY) == list(range(1, unsaved))
    assert stage_status(workdir, KEY, "train") == RUNNING
    assert_done_means_complete(workdir)

    running = cli(*TRAIN_ARGS)
    kill_when(running, lambda: recorded in recorded_epochs(workdir, KEY), f"epoch {recorded} recorded")
    assert recorded_epochs(workdir, KEY) == list(range(1, recorded + 1))
    assert_done_means_complete(workdir)

    result = slscale(*TRAIN_ARGS)
    assert result.code == 0, result.output
    assert_epochs_once(workdir, KEY, EPOCHS)
    assert_done_means_complete(workdir)
    assert leftovers(workdir) == []


def test_eval_killed_midway_keeps_one_record_per_epoch(
    workdir: Path, trained: Path, cli: Callable[..., Running]
) -> None:
    """Control and adapter re-evaluation, each killed while it runs, then completed."""
    copy_workdir(trained, workdir)
    layout = Layout(workdir)
    before = json.loads(layout.eval_json(JobKey(1, TINY, "dog")).read_text())["epochs"]
    control = JobKey(1, TINY, "control")
    jobs = [
        (["eval", "--size", TINY, "--control", "--samples", "10"], control),
        (["eval", "--size", TINY, "--animal", "dog", "--samples", "10"], KEY),
    ]
    for args, key in jobs:
        running = cli(*args)
        kill_when(running, lambda key=key: stage_status(workdir, key, "eval") == RUNNING, f"eval {key} runs")
        assert_done_means_complete(workdir)
        result = slscale(*args)
        assert result.code == 0, result.output
        assert stage_status(workdir, key, "eval") == DONE

    assert [r["epoch"] for r in json.loads(layout.control_eval_json(TINY).read_text())["epochs"]] == [0]
    after = json.loads(layout.eval_json(JobKey(1, TINY, "dog")).read_text())["epochs"]
    assert [r["epoch"] for r in after] == [r["epoch"] for r in before] == [1, 2]
    assert [r["train_loss"] for r in after] == [r["train_loss"] for r in before]
    assert recorded_epochs(workdir, KEY) == [1, 2]
    assert_done_means_complete(workdir)
    assert leftovers(workdir) == []
