"""Crash safety of `slscale train`: SIGKILL and Ctrl-C in real subprocesses, then resume.

The reference is an uninterrupted run with the same seed; the interrupted one must end with exactly
the same epochs, losses and evaluations (same data order, optimizer, scheduler and RNG after resume).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sl_scaling.catalog import Layout
from sl_scaling.cli.app import app
from sl_scaling.state import DONE, INTERRUPTED, RUNNING, JobKey, StateStore
from sl_scaling.training.resume import CHECKPOINTS, complete_checkpoints

KEY = JobKey(1, "tiny", "dolphin")
# Small batches make each epoch long enough (many optimizer steps) to be caught in the middle.
TRAIN = [
    "train", "--size", "tiny", "--animal", "dolphin", "--epochs", "3", "--no-push",
    "--batch-size", "2", "--grad-accum", "1", "--samples", "10",
]  # fmt: skip
POLL_S = 0.02


@pytest.fixture(scope="module")
def numbers(tmp_path_factory: pytest.TempPathFactory, tiny_cache: Path) -> Path:
    root = tmp_path_factory.mktemp("numbers")
    env = {"SLSCALE_TINY_CACHE": str(tiny_cache), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    for command in (["gen", "--n", "200"], ["filter"]):
        result = CliRunner().invoke(
            app, [*command, "--size", "tiny", "--animal", "dolphin", "--workdir", str(root)], env=env
        )
        assert result.exit_code == 0, result.output
    return root


def start(workdir: Path) -> subprocess.Popen[str]:
    """`slscale train` in its own process (a SIGKILL must not take the test with it)."""
    code = "from sl_scaling.cli.app import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *TRAIN, "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def epoch_done(workdir: Path, epoch: int) -> bool:
    """Epoch `epoch` is recorded in the DB and its Trainer checkpoint is complete: the next epoch runs."""
    with StateStore.open(workdir) as state:
        recorded = {e.epoch for e in state.epochs(KEY)}
    checkpoints = Layout(workdir).finetune_dir(JobKey(1, "tiny", "dolphin")) / CHECKPOINTS
    return epoch in recorded and any(c.epoch == epoch for c in complete_checkpoints(checkpoints))


def interrupt_after(process: subprocess.Popen[str], workdir: Path, epoch: int, sig: signal.Signals) -> None:
    """Send `sig` as soon as epoch `epoch` is complete, i.e. while the next epoch trains."""
    while not epoch_done(workdir, epoch):
        assert process.poll() is None, f"training ended before epoch {epoch} completed:\n{finish(process)[1]}"
        time.sleep(POLL_S)
    assert process.poll() is None, "training finished before it could be interrupted"
    process.send_signal(sig)


def epochs(workdir: Path) -> list[dict]:
    return json.loads(Layout(workdir).eval_json(JobKey(1, "tiny", "dolphin")).read_text())["epochs"]


def test_killed_and_interrupted_training_resumes_to_the_uninterrupted_result(
    numbers: Path, workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    reference = tmp_path_factory.mktemp("reference")
    for root in (reference, workdir):
        shutil.copytree(numbers / "data", root / "data")
    code, output = finish(start(reference))
    assert code == 0, output

    # 1. SIGKILL during epoch 2: nothing can clean up; epoch 1 must survive intact.
    killed = start(workdir)
    interrupt_after(killed, workdir, 1, signal.SIGKILL)
    assert finish(killed)[0] == -signal.SIGKILL
    with StateStore.open(workdir) as state:
        assert state.stage(KEY, "train").status == RUNNING  # nobody could mark it
        assert 1 in {e.epoch for e in state.epochs(KEY)}

    # 2. Resume, then Ctrl-C during epoch 3: exit 130, the stage says interrupted, finished epochs kept.
    resumed = start(workdir)
    interrupt_after(resumed, workdir, 2, signal.SIGINT)
    code, output = finish(resumed)
    assert code == 130, output
    assert "resuming after epoch" in output and "interrupted" in output
    with StateStore.open(workdir) as state:
        assert state.stage(KEY, "train").status == INTERRUPTED
        assert {1, 2} <= {e.epoch for e in state.epochs(KEY)}

    # 3. Resume to the end: exactly three epochs, equal to the uninterrupted run's.
    code, output = finish(start(workdir))
    assert code == 0, output
    got, want = epochs(workdir), epochs(reference)
    assert [r["epoch"] for r in got] == [1, 2, 3]
    for mine, theirs in zip(got, want, strict=True):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert mine["counts"] == theirs["counts"]
        assert [a["answer"] for a in mine["answers"]] == [a["answer"] for a in theirs["answers"]]
    with StateStore.open(workdir) as state:
        assert [e.epoch for e in state.epochs(KEY)] == [1, 2, 3]
        assert state.stage(KEY, "train").status == DONE
    layout = Layout(workdir)
    assert (layout.final_checkpoint(JobKey(1, "tiny", "dolphin")) / "adapter_model.safetensors").exists()
    assert not (layout.finetune_dir(JobKey(1, "tiny", "dolphin")) / CHECKPOINTS).exists()
    leftovers = [
        p.name for p in layout.finetune_dir(JobKey(1, "tiny", "dolphin")).iterdir() if p.name.startswith(".")
    ]
    assert leftovers == []
