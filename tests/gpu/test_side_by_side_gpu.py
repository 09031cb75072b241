"""Trainings sharing the GPU (the local executor's shared jobs), on the lent H200."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_side_by_side import assert_same_training, train

from sl_scaling.context import make_context
from sl_scaling.executors.mps import CONTROL, PIPE_PREFIX, mps_running

pytestmark = pytest.mark.gpu


@pytest.fixture
def small_qwen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, random_qwen: Callable[..., Path]) -> Path:
    """A small random-weight Qwen2 standing in for `tiny` (whose build takes minutes of CPU the GPU
    machine is better spent on)."""
    small = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    directory = random_qwen(tmp_path / "small-qwen", intermediate_size=256, **small)
    monkeypatch.setenv("SLSCALE_MODEL_IDS__TINY", str(directory))
    return directory


def test_a_condition_trained_beside_others_matches_it_trained_alone_on_the_gpu(
    tmp_path: Path, small_qwen: Path
) -> None:
    """Alone, then three at once, each in its own process with a third of the GPU (so with the same speed
    settings: a training with the whole GPU also computes the rows' shared prefix once, which rounds its sums
    differently) under slscale's own CUDA MPS daemon, which starts although this process already holds a CUDA
    context of its own (as `slscale run`'s does after generation)."""
    if mps_running() or shutil.which(CONTROL) is None:
        pytest.skip("needs nvidia-cuda-mps-control and no MPS daemon running")
    torch.ones(1, device="cuda")
    alone = train(tmp_path / "alone", ("dolphin",), gpus=1 / 3)["dolphin"]
    three = train(tmp_path / "beside", ("dolphin", "eagle", "wolf"), gpus=1 / 3)
    log = (make_context(tmp_path / "beside").layout.logs_dir / "mps" / "control.log").read_text()
    print(log)  # the daemon's own account: its server and its clients
    assert log.count("NEW CLIENT") >= 3  # each training process connected (and PyTorch's helper processes)
    assert not list(Path(tempfile.gettempdir()).glob(f"{PIPE_PREFIX}*"))  # and no daemon of ours is left
    # Same rows, loss and seeds; GPU kernels may differ from run to run in the last bits only.
    assert_same_training(alone, three["dolphin"], rtol=1e-3, atol=1e-5)
    stages = [three[c]["stage"] for c in ("dolphin", "eagle", "wolf")]
    assert max(s.started_at for s in stages) < min(s.finished_at for s in stages)  # all three at once
