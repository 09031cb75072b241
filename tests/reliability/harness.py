"""Helpers to run the real `slscale` in subprocesses, kill it at chosen moments, and check what it left.

Kill timing is driven by polling the state DB and the files (never fixed sleeps), so a slow, shared
CPU changes how long a test takes, not what it tests. Every subprocess inherits the test's
environment from tests/conftest.py (its own workdir, the session tiny-model cache, offline Hub,
W&B disabled, one OpenMP thread).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sl_scaling.catalog import Layout
from sl_scaling.numbers import sample_prompts
from sl_scaling.state import DONE, JobKey

CLI = [sys.executable, "-c", "from sl_scaling.cli.app import main; main()"]
#: Seeds for the randomised kill moments; `SLSCALE_RELIABILITY_SEEDS=0,1,2,3` tries more.
SEEDS = [int(s) for s in os.environ.get("SLSCALE_RELIABILITY_SEEDS", "0,1").split(",") if s.strip()]
POLL_S = 0.02
DEADLINE_S = 300.0
TINY = "tiny"

# Small but real: the tiny model generates, trains and evaluates in seconds on one core.
GEN_N = 40
GEN = ["--n", str(GEN_N), "--engine", "hf", "--batch-size", "4", "--max-new-tokens", "32"]
TRAIN = ["--epochs", "3", "--samples", "10", "--batch-size", "2", "--grad-accum", "1", "--no-push"]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def _env(extra: Mapping[str, str | None] | None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def slscale(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = DEADLINE_S,
) -> Result:
    """`slscale ARGS` to completion in a subprocess (stdin closed, output captured)."""
    done = subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )
    return Result(done.returncode, done.stdout, done.stderr)


class Running:
    """A `slscale` subprocess writing its output to files (a pipe nobody reads could block it)."""

    def __init__(self, args: list[str], logs: Path, env: Mapping[str, str | None] | None = None) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.monotonic_ns()}"
        self._out, self._err = logs / f"{stamp}.out", logs / f"{stamp}.err"
        with self._out.open("w") as out, self._err.open("w") as err:
            self.process = subprocess.Popen(
                [*CLI, *args], env=_env(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = DEADLINE_S) -> Result:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        return Result(code, self._out.read_text(), self._err.read_text())

    def stop(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()


def wait_until(
    running: Running, condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S
) -> None:
    """Poll `condition` until it holds while `running` still runs (fail with its output otherwise)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if not running.alive():
            pytest.fail(f"the command ended before {what}:\n{running.wait().output}")
        if time.monotonic() > deadline:
            running.stop()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def kill_when(running: Running, condition: Callable[[], bool], what: str) -> Result:
    """SIGKILL as soon as `condition` holds; returns what the killed process had printed."""
    wait_until(running, condition, what)
    assert running.alive(), f"finished before {what} could be interrupted"
    running.signal(signal.SIGKILL)
    result = running.wait()
    assert result.code == -signal.SIGKILL, result.output
    return result


# --- reading what is on disk without disturbing the writer ------------------------------------------


def db_rows(workdir: Path, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Rows from the state DB through a fresh read-only connection ([] while it does not exist yet)."""
    path = Layout(workdir).db_path
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        db.close()


def stage_status(workdir: Path, key: JobKey, stage: str) -> str | None:
    rows = db_rows(
        workdir,
        "SELECT status FROM stages WHERE run=? AND size=? AND condition=? AND stage=?",
        (key.run, key.size, key.condition, stage),
    )
    return rows[0]["status"] if rows else None


def recorded_epochs(workdir: Path, key: JobKey) -> list[int]:
    rows = db_rows(
        workdir,
        "SELECT epoch FROM epochs WHERE run=? AND size=? AND condition=? ORDER BY epoch",
        (key.run, key.size, key.condition),
    )
    return [row["epoch"] for row in rows]


def whole_lines(path: Path) -> int:
    """Complete lines (a torn last line does not count)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- invariants --------------------------------------------------------------------------------------


def assert_raw_complete(workdir: Path, key: JobKey, n: int, seed: int = 42) -> list[dict[str, Any]]:
    """Exactly n rows, index i once each with prompt i, and the DB says done with n rows."""
    rows = jsonl(Layout(workdir).raw_jsonl(key))
    assert [row["index"] for row in rows] == list(range(n))
    assert [row["prompt"] for row in rows] == sample_prompts(n, seed)
    assert all(isinstance(row["completion"], str) for row in rows)
    assert stage_status(workdir, key, "gen") == DONE
    return rows


def assert_epochs_once(workdir: Path, key: JobKey, epochs: int) -> None:
    """Epochs 1..E each exactly once in the DB, the eval file and model_info.json; the last is final."""
    layout = Layout(workdir)
    expected = list(range(1, epochs + 1))
    assert recorded_epochs(workdir, key) == expected
    records = json.loads(layout.eval_json(key).read_text())["epochs"]
    assert [r["epoch"] for r in records] == expected
    info = json.loads(layout.model_info(key).read_text())
    assert sorted(int(e) for e in info["epochs"]) == expected
    final = layout.final_checkpoint(key)
    assert (final / "adapter_model.safetensors").is_file()
    assert stage_status(workdir, key, "train") == DONE


def assert_done_means_complete(workdir: Path) -> None:
    """No stage is `done` unless its file is complete (the DB never runs ahead of the data)."""
    layout = Layout(workdir)
    for row in db_rows(workdir, "SELECT * FROM stages WHERE status='done'"):
        size, condition, run, counts = row["size"], row["condition"], row["run"], json.loads(row["counts"])
        if row["stage"] == "gen":
            rows = jsonl(layout.raw_jsonl(JobKey(run, size, condition)))
            assert [r["index"] for r in rows] == list(range(counts["rows"]))
        elif row["stage"] == "filter":
            assert len(jsonl(layout.filtered_jsonl(JobKey(run, size, condition)))) == counts["kept"]
        elif row["stage"] == "train":
            key = JobKey(run, size, condition)
            assert recorded_epochs(workdir, key) == list(range(1, counts["epochs"] + 1))
            assert (
                layout.final_checkpoint(JobKey(run, size, condition)) / "adapter_model.safetensors"
            ).is_file()
        elif row["stage"] == "eval" and condition == "control":
            records = json.loads(layout.control_eval_json(size, run).read_text())["epochs"]
            assert [r["epoch"] for r in records] == [0]


def leftovers(workdir: Path) -> list[str]:
    """Temp files/dirs a finished command must not leave behind (atomic-write and adapter-save temps,
    fetched adapters, Trainer checkpoints) and locks still held."""
    found = [
        str(path.relative_to(workdir))
        for path in workdir.rglob("*")
        if path.name.endswith((".tmp", ".old"))
        or path.name.startswith(".fetched-")
        or (path.name == "checkpoints" and path.is_dir())
    ]
    found += [f"lock {dict(row)}" for row in db_rows(workdir, "SELECT * FROM locks")]
    return found


def kill_points(seed: int, count: int, low: int, high: int) -> list[int]:
    """`count` increasing random thresholds in [low, high] for one seed (the randomised kill timing)."""
    return sorted(random.Random(seed).sample(range(low, high + 1), count))


# --- shared prepared work (built once per session, copied into each test's workdir) -----------------


#: Credentials and Hub settings the caller may have; prepared workdirs are built without them.
SECRETS = (
    "HF_TOKEN",
    "SLSCALE_HF_TOKEN",
    "HF_USER_ID",
    "SLSCALE_HF_USER_ID",
    "HF_ENDPOINT",
    "SLSCALE_HF_ENDPOINT",
)


def prepare(root: Path, steps: list[list[str]], tiny_cache: Path) -> Path:
    """Run `steps` in `root` offline (session fixtures run before the per-test environment is set)."""
    env: dict[str, str | None] = {
        "SLSCALE_TINY_CACHE": str(tiny_cache), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
        **dict.fromkeys(SECRETS),
    }  # fmt: skip
    for args in steps:
        result = slscale(*args, "--workdir", str(root), env=env)
        assert result.code == 0, result.output
    return root


def copy_workdir(source: Path, dest: Path) -> Path:
    """A copy of a prepared workdir whose absolute paths (adapter paths in the DB) point into `dest`."""
    shutil.copytree(source, dest, dirs_exist_ok=True)
    db = sqlite3.connect(Layout(dest).db_path)
    with db:
        db.execute("UPDATE epochs SET adapter_path = replace(adapter_path, ?, ?)", (str(source), str(dest)))
    db.close()
    for info in dest.rglob("model_info.json"):
        info.write_text(info.read_text().replace(str(source), str(dest)))
    for records in dest.rglob("*_eval.json"):
        records.write_text(records.read_text().replace(str(source), str(dest)))
    return dest
