"""Several conditions of a size trained at once (the local executor's shared-GPU jobs) on `tiny`: a
condition trained beside another is exactly the condition trained alone; the bench times that path."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import sys
import tempfile
from functools import partial
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sl_scaling.bench import data, train_path
from sl_scaling.bench.measure import ModelSource
from sl_scaling.context import make_context
from sl_scaling.executors.base import Job
from sl_scaling.executors.local import LocalExecutor, SharedGpu
from sl_scaling.executors.mps import OWNER_FILE, PIPE_PREFIX
from sl_scaling.files import atomic_write_jsonl
from sl_scaling.pipeline import RunOptions, run_job
from sl_scaling.processes import cpu_workers, start_cpu_workers_now, start_worker
from sl_scaling.progress import NullReporter
from sl_scaling.state import DONE, JobKey
from sl_scaling.training.data import build_dataset, load_rows

ROWS = 40
OPTIONS = RunOptions(epochs=2, samples=8, push=False)


def train(workdir: Path, conditions: tuple[str, ...], gpus: float) -> dict[str, dict]:
    """Train `conditions` of tiny through the local executor and `slscale run`'s own job function;
    returns, per condition, its final adapter tensors, epoch records and train-stage times."""
    ctx = make_context(workdir)
    for condition in conditions:
        atomic_write_jsonl(
            ctx.layout.filtered_jsonl(JobKey(OPTIONS.run, "tiny", condition)),
            data.filtered_rows(ROWS, seed=3),
        )
    jobs = [Job("train", "tiny", (c,), OPTIONS.run, gpus=gpus) for c in conditions]
    outcomes = LocalExecutor().execute(ctx, jobs, partial(run_job, options=OPTIONS), NullReporter())
    assert [o.status for o in outcomes] == [DONE] * len(conditions), outcomes
    found = {}
    with ctx.state() as state:
        for condition in conditions:
            key = JobKey(OPTIONS.run, "tiny", condition)
            final = ctx.layout.final_checkpoint(key)
            found[condition] = {
                "adapter": load_file(final / "adapter_model.safetensors"),
                "epochs": [(e.epoch, e.train_loss, e.target_rate) for e in state.epochs(key)],
                "stage": state.stage(key, "train"),
            }
    return found


def assert_same_training(alone: dict, beside: dict, **tolerance: float) -> None:
    assert len(beside["epochs"]) == len(alone["epochs"])
    for theirs, ours in zip(beside["epochs"], alone["epochs"], strict=True):  # (epoch, loss, target rate)
        assert theirs == pytest.approx(ours, rel=tolerance["rtol"], abs=tolerance["atol"])
    assert alone["adapter"].keys() == beside["adapter"].keys()
    for name, tensor in alone["adapter"].items():
        torch.testing.assert_close(beside["adapter"][name], tensor, **tolerance)


def test_a_condition_trained_beside_another_equals_it_trained_alone(tmp_path: Path, tiny_model: Path) -> None:
    alone = train(tmp_path / "alone", ("dolphin",), gpus=1)["dolphin"]
    both = train(tmp_path / "beside", ("dolphin", "eagle"), gpus=0.5)
    assert_same_training(alone, both["dolphin"], rtol=0, atol=0)
    dolphin, eagle = both["dolphin"]["stage"], both["eagle"]["stage"]
    assert dolphin.started_at < eagle.finished_at and eagle.started_at < dolphin.finished_at  # at once


def test_bench_times_the_real_training_path(tmp_path: Path, tiny_model: Path) -> None:
    run = train_path.PathRun(
        "tiny",
        ModelSource("tiny", random_weights=False, path=str(tiny_model)).parameters,
        random_weights=False,
        model_path=str(tiny_model),
        steps=7,
        config_changes={"batch_size": 4, "grad_accum": 1, "eval_samples": 8},
    )
    record = train_path.one_at_a_time(tmp_path, run, warm_epoch_end=True)
    assert (record["engine"], record["default"], record["steady_steps"]) == ("slscale-train", True, 2)
    assert record["rows"] == 2 * 4 and record["batches"]["micro_batch"] == 4
    # tokens counted from the rows' own token counts, as the training stage recorded them
    from transformers import AutoTokenizer

    layout = make_context(tmp_path / "tiny-default").layout
    rows = load_rows(layout.filtered_jsonl(JobKey(1, "tiny", run.condition)), max_rows=28)
    dataset = build_dataset(
        AutoTokenizer.from_pretrained(tiny_model), rows, max_length=500, loss="completion"
    )
    per_row = sum(len(ids) for ids in dataset["input_ids"]) / len(dataset)
    assert record["tokens_per_row"] == pytest.approx(per_row, abs=0.05)
    assert abs(record["tokens"] - record["rows"] * per_row) <= 1
    assert record["epoch_end_s"] > 0 and record["seconds"] > 0
    # a grid training's epoch ends: its process's first, then warm ones (a second training in this process)
    first, warm = record["first_epoch_end_s"], record["warm_epoch_end_s"]
    assert first > 0 and warm > 0
    assert record["epoch_end_s"] == pytest.approx((first + 9 * warm) / 10, abs=0.01)
    assert (layout.final_checkpoint(JobKey(1, "tiny", run.condition)) / "adapter_model.safetensors").exists()


def _write_environ(path: Path, name: str) -> None:
    path.write_text(os.environ.get(name, "unset"))


def _write_frozen(path: Path) -> None:
    path.write_text(str(gc.get_freeze_count()))


def test_a_cpu_worker_keeps_the_imported_stack_out_of_garbage_collection(tmp_path: Path) -> None:
    """The objects a worker inherits from the fork server (its imported stack) are frozen: the full
    collections a training runs do not walk them again."""
    start_cpu_workers_now()
    process = start_worker(cpu_workers(), _write_frozen, tmp_path / "frozen")
    process.join(timeout=120)
    assert process.exitcode == 0 and int((tmp_path / "frozen").read_text()) > 100_000


def test_a_cpu_worker_gets_its_parents_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork server's children would get the server's environment from when it started; `start_worker`
    gives a worker its parent's, as a spawned process gets it."""
    workers = cpu_workers()
    for value in ("first", "second"):  # the second process comes from the server the first one started
        monkeypatch.setenv("SLSCALE_TEST_WORKER_ENV", value)
        out = tmp_path / value
        process = start_worker(workers, _write_environ, out, "SLSCALE_TEST_WORKER_ENV")
        process.join(timeout=120)
        assert process.exitcode == 0 and out.read_text() == value


FAKE_MPS_CONTROL = """#!/bin/sh
# Stands in for nvidia-cuda-mps-control (no GPU driver here): -d opens the control pipe, `quit` closes it.
if [ "$1" = "-d" ]; then
  [ -n "$FAKE_MPS_FAIL" ] && { echo "An instance of this daemon is already running" >&2; exit 1; }
  touch "$CUDA_MPS_PIPE_DIRECTORY/control"
else
  read command; [ "$command" = quit ] && rm "$CUDA_MPS_PIPE_DIRECTORY/control"
  echo "$command $CUDA_MPS_PIPE_DIRECTORY" >> "$FAKE_MPS_COMMANDS"
fi
"""


class Events(NullReporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def event(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def mps_control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`nvidia-cuda-mps-control` on PATH (a stand-in), and no MPS daemon of the user's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-cuda-mps-control").write_text(FAKE_MPS_CONTROL)
    (bin_dir / "nvidia-cuda-mps-control").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path / "no-daemon-here"))
    monkeypatch.setenv("FAKE_MPS_COMMANDS", str(tmp_path / "commands"))
    return bin_dir


#: Stands in for the CUDA client that proves the daemon's server serves (no GPU here).
CUDA_CLIENT = (sys.executable, "-c", "pass")
SHARED = [Job("train", "0.5b", (c,), 1, gpus=0.25) for c in ("dolphin", "eagle")]


def test_trainings_sharing_a_gpu_run_under_a_private_mps_daemon(tmp_path: Path, mps_control: Path) -> None:
    """The first shared training starts slscale's own daemon (pipes in a directory of its own, log in the
    workdir); every training's process gets its pipes, nothing else does; it quits when they are done."""
    ctx, events = make_context(tmp_path / "work"), Events()
    shared = SharedGpu(ctx, SHARED, gpus=1, reporter=events, probe=CUDA_CLIENT)
    assert events.lines == []  # nothing starts before a training does
    environment = shared.environment()
    assert environment is not None and shared.environment() == environment  # one daemon for all of them
    pipes = Path(environment["CUDA_MPS_PIPE_DIRECTORY"])
    assert (pipes / "control").exists() and os.environ["CUDA_MPS_PIPE_DIRECTORY"] != str(pipes)
    process = start_worker(
        cpu_workers(), _write_environ, tmp_path / "seen", "CUDA_MPS_PIPE_DIRECTORY", environment=environment
    )
    process.join(timeout=120)
    assert process.exitcode == 0 and (tmp_path / "seen").read_text() == str(pipes)
    assert len(events.lines) == 1 and "CUDA MPS started" in events.lines[0]
    shared.stop()
    assert not pipes.exists() and (tmp_path / "commands").read_text() == f"quit {pipes}\n"
    assert (ctx.layout.logs_dir / "mps").is_dir()  # where the real daemon writes its log


def test_the_executor_quits_its_daemon_when_the_trainings_sharing_the_gpu_are_done(
    tmp_path: Path, mps_control: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`slscale run`'s executor, as on a GPU: the shared jobs' processes get the daemon, and it is quit as they
    end (each job here only prints what it was given)."""
    monkeypatch.setattr(LocalExecutor, "gpus_per_node", lambda self: 1)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # no other run's daemons in sight
    monkeypatch.setattr("sl_scaling.executors.local.SharedGpu", partial(SharedGpu, probe=CUDA_CLIENT))
    events = Events()
    outcomes = LocalExecutor().execute(make_context(tmp_path / "work"), SHARED, print, events)
    assert [o.status for o in outcomes] == [DONE, DONE]
    assert any("CUDA MPS started" in line for line in events.lines)
    quit_lines = (tmp_path / "commands").read_text().splitlines()
    assert len(quit_lines) == 1 and quit_lines[0].startswith(f"quit {tmp_path / 'tmp' / PIPE_PREFIX}")
    assert list((tmp_path / "tmp").iterdir()) == []  # its pipes are gone


def test_a_killed_runs_daemon_is_quit_by_the_next_run(tmp_path: Path, mps_control: Path) -> None:
    """`kill -9` leaves the daemon behind (no `finally` runs): the next run quits the daemons whose slscale
    process is gone, and leaves a live one's alone."""
    gone = start_worker(cpu_workers(), _write_frozen, tmp_path / "frozen")
    gone.join(timeout=120)
    abandoned, live = (Path(tempfile.mkdtemp(prefix=PIPE_PREFIX)) for _ in range(2))
    for pipes, pid in ((abandoned, gone.pid), (live, os.getpid())):
        (pipes / "control").touch()
        (pipes / OWNER_FILE).write_text(f"{socket.gethostname()} {pid}\n")
    try:
        shared = SharedGpu(
            make_context(tmp_path / "work"), SHARED, gpus=1, reporter=Events(), probe=CUDA_CLIENT
        )
        mine = Path(shared.environment()["CUDA_MPS_PIPE_DIRECTORY"])
        assert not abandoned.exists() and (live / "control").exists() and (mine / "control").exists()
        assert (tmp_path / "commands").read_text() == f"quit {abandoned}\n"
        shared.stop()
    finally:
        shutil.rmtree(live)


def test_without_mps_trainings_sharing_a_gpu_say_why_they_take_turns(
    tmp_path: Path, mps_control: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = [Job("train", "7b", ("dolphin",), 1, gpus=1)]
    ctx = make_context(tmp_path / "work")
    for jobs, gpus in ((SHARED, 0), (whole, 1)):  # on a CPU, or no training shares a GPU: no MPS, no word
        events = Events()
        assert (
            SharedGpu(ctx, jobs, gpus=gpus, reporter=events, probe=CUDA_CLIENT).environment() is None
            and events.lines == []
        )
    monkeypatch.setenv("FAKE_MPS_FAIL", "1")  # the daemon does not start: its own words, and no MPS
    events = Events()
    assert SharedGpu(ctx, SHARED, gpus=1, reporter=events, probe=CUDA_CLIENT).environment() is None
    assert events.lines == [
        "trainings sharing a GPU take turns on it: CUDA MPS did not start "
        "(nvidia-cuda-mps-control -d failed (An instance of this daemon is already running))"
    ]
    monkeypatch.delenv("FAKE_MPS_FAIL")  # it starts, but its server serves no CUDA client: stopped again
    events, refused = (
        Events(),
        (sys.executable, "-c", "raise SystemExit('CUDA error: MPS client failed to connect')"),
    )
    shared = SharedGpu(ctx, SHARED, gpus=1, reporter=events, probe=refused)
    assert shared.environment() is None and "quit" in (tmp_path / "commands").read_text()  # its daemon quit
    assert events.lines == [
        "trainings sharing a GPU take turns on it: CUDA MPS did not start "
        "(its server served no CUDA client: CUDA error: MPS client failed to connect)"
    ]
    monkeypatch.setenv("SLSCALE_MPS", "false")  # turned off
    events = Events()
    assert (
        SharedGpu(
            make_context(tmp_path / "work"), SHARED, gpus=1, reporter=events, probe=CUDA_CLIENT
        ).environment()
        is None
    )
    assert events.lines == ["trainings sharing a GPU take turns on it: CUDA MPS is off (SLSCALE_MPS=false)"]
    monkeypatch.delenv("SLSCALE_MPS")
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(mps_control))  # the user's daemon runs: used as it is
    (mps_control / "control").touch()
    events = Events()
    assert (
        SharedGpu(ctx, SHARED, gpus=1, reporter=events, probe=CUDA_CLIENT).environment() is None
        and events.lines == []
    )
    monkeypatch.setenv("PATH", "/nonexistent")  # not installed
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path / "none"))
    events = Events()
    assert SharedGpu(ctx, SHARED, gpus=1, reporter=events, probe=CUDA_CLIENT).environment() is None
    assert events.lines[0].endswith("(nvidia-cuda-mps-control is not installed)")
