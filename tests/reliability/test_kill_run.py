"""SIGKILL `slscale run` while a randomly chosen stage runs, then run it again: the grid completes."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import (
    GEN_N,
    SEEDS,
    TINY,
    Running,
    assert_done_means_complete,
    assert_epochs_once,
    assert_raw_complete,
    kill_when,
    leftovers,
    slscale,
    stage_status,
)

from sl_scaling.catalog import Layout
from sl_scaling.state import DONE, RUNNING, JobKey

DOG, CONTROL = JobKey(1, TINY, "dog"), JobKey(1, TINY, "control")
RUN = ["run", "--size", TINY, "--animal", "dog", "--n", str(GEN_N), "--epochs", "2", "--samples", "20"]
RUN += ["--engine", "hf", "--no-push", "--no-plots"]
#: Stages long enough to be caught running (filter takes milliseconds on 40 rows).
MOMENTS = [("gen", DOG), ("train", DOG), ("eval", CONTROL)]


@pytest.mark.parametrize(("stage", "key"), MOMENTS, ids=[stage for stage, _ in MOMENTS])
def test_run_killed_in_each_stage_completes_when_run_again(
    stage: str, key: JobKey, workdir: Path, cli: Callable[..., Running], tiny_model: Path
) -> None:
    """Killed a random number of polls (per seed) after the stage started."""
    polls = iter(range(random.Random(SEEDS[0]).randint(0, 5), -1, -1))
    running = cli(*RUN)
    kill_when(
        running,
        lambda: stage_status(workdir, key, stage) == RUNNING and next(polls, 0) == 0,
        f"{stage} {key} runs",
    )
    assert_done_means_complete(workdir)

    result = slscale(*RUN)
    assert result.code == 0, result.output
    assert_raw_complete(workdir, DOG, GEN_N)
    assert stage_status(workdir, DOG, "filter") == DONE
    assert_epochs_once(workdir, DOG, 2)
    assert stage_status(workdir, CONTROL, "eval") == DONE
    assert Layout(workdir).control_eval_json(TINY).is_file()
    assert_done_means_complete(workdir)
    assert leftovers(workdir) == []
