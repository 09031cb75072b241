"""Readers and other jobs work while `gen`/`train` write; a second writer of the same job is refused;
Ctrl-C (SIGINT) marks the stage interrupted, keeps what finished and exits 130; SIGTERM (`kill`, a scheduler's
stop) does the same and exits 143, in `run`'s worker processes too."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness import (
    GEN_N,
    TINY,
    TRAIN,
    Running,
    copy_workdir,
    db_rows,
    jsonl,
    recorded_epochs,
    slscale,
    stage_status,
    wait_until,
    whole_lines,
)

from sl_scaling.catalog import Layout
from sl_scaling.state import INTERRUPTED, RUNNING, JobKey, StateStore

DOG = JobKey(1, TINY, "dog")
# Longer than the readers take (they run while it writes); both are interrupted, never finished.
LONG_TRAIN = ["train", "--size", TINY, "--animal", "dog", *TRAIN[2:], "--epochs", "60"]
LONG_GEN = ["gen", "--size", TINY, "--animal", "dog", "--n", "4000", "--engine", "hf", "--batch-size", "4"]


def error_line(stderr: str) -> str:
    """The one `error:` line, last on stderr (progress lines of the work done before may precede it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), stderr
    assert sum(line.startswith("error:") for line in lines) == 1 and "Traceback" not in stderr, stderr
    return lines[-1]


def interrupt(running: Running, how: signal.Signals = signal.SIGINT) -> str:
    """Ctrl-C (exit 130) or SIGTERM (143): no traceback, one error line saying finished work is kept."""
    running.signal(how)
    result = running.wait()
    assert result.code == 128 + how, result.output
    line = error_line(result.stderr)
    said = "error: interrupted" if how == signal.SIGINT else "error: terminated (SIGTERM)"
    assert line.startswith(said) and "kept" in line, line
    return result.stderr


def test_while_gen_writes_readers_work_a_second_gen_is_refused_and_ctrl_c_keeps_rows(
    workdir: Path, cli: Callable[..., Running], tiny_model: Path
) -> None:
    raw = Layout(workdir).raw_jsonl(JobKey(1, TINY, "dog"))
    writer = cli(*LONG_GEN)
    wait_until(writer, lambda: whole_lines(raw) >= 4, "the first rows")

    second = slscale(*LONG_GEN)
    assert second.code == 1, second.output
    line = error_line(second.stderr)
    since = db_rows(workdir, "SELECT since FROM locks WHERE stage='gen'")[0]["since"]
    assert f"pid {writer.pid}" in line and socket.gethostname() in line and since in line, line

    status = slscale("status", "--json")
    assert status.code == 0, status.output
    row = next(r for r in json.loads(status.stdout)["rows"] if r["condition"] == "dog")
    assert row["state"] == RUNNING
    control = slscale("eval", "--size", TINY, "--control", "--samples", "10")
    assert control.code == 0, control.output
    assert writer.alive(), "gen ended before the readers were done; give it more rows"

    interrupt(writer)
    assert stage_status(workdir, DOG, "gen") == INTERRUPTED
    assert db_rows(workdir, "SELECT * FROM locks") == []
    kept = jsonl(raw)
    indices = [r["index"] for r in kept]  # in the order batches finished
    assert len(indices) >= 4 and len(set(indices)) == len(indices)


def test_sigterm_stops_gen_as_ctrl_c_does(
    workdir: Path, cli: Callable[..., Running], tiny_model: Path
) -> None:
    raw = Layout(workdir).raw_jsonl(DOG)
    writer = cli(*LONG_GEN)
    wait_until(writer, lambda: whole_lines(raw) >= 4, "the first rows")
    interrupt(writer, signal.SIGTERM)
    assert stage_status(workdir, DOG, "gen") == INTERRUPTED
    assert db_rows(workdir, "SELECT * FROM locks") == []
    assert len(jsonl(raw)) >= 4


def test_sigterm_stops_runs_trainings_in_their_worker_processes(
    workdir: Path, generated: Path, cli: Callable[..., Running]
) -> None:
    """`run` trains tiny's conditions in worker processes (one per core): the driver passes SIGTERM on,
    each training records its interruption and keeps its finished epochs."""
    copy_workdir(generated, workdir)
    cat = JobKey(1, TINY, "cat")
    driver = cli(
        "run", "--size", TINY, "--animal", "dog", "--animal", "cat", "--n", str(GEN_N), "--epochs", "60",
        "--samples", "10", "--no-push",
    )  # fmt: skip
    wait_until(driver, lambda: recorded_epochs(workdir, DOG)[:1] == [1], "dog's epoch 1 recorded")
    signalled = time.monotonic()
    interrupt(driver, signal.SIGTERM)
    assert time.monotonic() - signalled < 25  # well within a scheduler's grace period before SIGKILL
    assert stage_status(workdir, DOG, "train") == INTERRUPTED
    assert stage_status(workdir, cat, "train") in (INTERRUPTED, None)  # on the other core, or not started
    assert recorded_epochs(workdir, DOG)[0] == 1
    assert db_rows(workdir, "SELECT * FROM locks") == []


def test_while_train_writes_status_plot_and_eval_work_and_ctrl_c_keeps_epochs(
    workdir: Path, generated: Path, cli: Callable[..., Running]
) -> None:
    copy_workdir(generated, workdir)
    writer = cli(*LONG_TRAIN)
    wait_until(writer, lambda: recorded_epochs(workdir, DOG) == [1], "epoch 1 recorded")
    for args in (
        LONG_TRAIN,  # the same job: refused
        ["status", "--json"],
        ["plot", "--size", TINY],
        ["eval", "--size", TINY, "--control", "--samples", "10"],
    ):
        result = slscale(*args)
        if args[0] == "train":
            assert result.code == 1 and f"pid {writer.pid}" in error_line(result.stderr), result.output
        else:
            assert result.code == 0, f"{args}: {result.output}"
    assert writer.alive(), "training ended before the readers were done; give it more epochs"
    interrupt(writer)
    assert stage_status(workdir, DOG, "train") == INTERRUPTED
    assert recorded_epochs(workdir, DOG)[0] == 1
    assert db_rows(workdir, "SELECT * FROM locks") == []


HOLD_WRITE = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO events (ts, kind, message) VALUES ('now', 'test', 'held')")
print("holding", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


def test_readers_open_the_db_while_another_process_holds_a_write_transaction(workdir: Path) -> None:
    """Opening the DB checks migrations with a plain read: it must not queue behind a writer."""
    StateStore.open(workdir).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE, str(Layout(workdir).db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        result = slscale("status", "--json")
        assert result.code == 0, result.output
        assert holder.poll() is None  # still holding: status did not wait for it
    finally:
        holder.communicate("\n", timeout=60)
