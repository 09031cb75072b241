"""Standalone commands keep third-party notices (transformers' token alignment, W&B's offline lines) in
the stage's log file, as `run` does; `--verbose` leaves them on the terminal."""

from __future__ import annotations

from pathlib import Path

from harness import TINY, copy_workdir, slscale

NOTICE = "PAD/BOS/EOS"  # transformers' Trainer, every time a tiny student is set up
TRAIN = [
    "train",
    "--size",
    TINY,
    "--animal",
    "dog",
    "--epochs",
    "1",
    "--samples",
    "10",
    "--final-samples",
    "0",
]


def test_train_notices_go_to_its_log_unless_verbose(generated: Path, tmp_path: Path) -> None:
    workdir = copy_workdir(generated, tmp_path / "w")
    env = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    quiet = slscale(*TRAIN, "--no-push", "--workdir", str(workdir), env=env)
    assert quiet.code == 0, quiet.output
    assert NOTICE not in quiet.output and "wandb:" not in quiet.output, quiet.output
    logs = list((workdir / "logs").rglob(f"train_{TINY}_*.log"))
    assert len(logs) == 1 and NOTICE in logs[0].read_text(), logs
    loud = slscale(*TRAIN, "--no-push", "--force", "--verbose", "--workdir", str(workdir), env=env)
    assert loud.code == 0, loud.output
    assert NOTICE in loud.output
