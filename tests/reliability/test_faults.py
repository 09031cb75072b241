"""Faults outside the program: a Hub outage during training, a full disk, the GPU out of memory."""

from __future__ import annotations

import json
import resource
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import (
    TINY,
    assert_raw_complete,
    copy_workdir,
    db_rows,
    jsonl,
    leftovers,
    recorded_epochs,
    slscale,
    stage_status,
)
from hub_stub import DROP, HubStub

from sl_scaling.catalog import Layout
from sl_scaling.files import atomic_write_jsonl
from sl_scaling.numbers import sample_prompts
from sl_scaling.state import DONE, FAILED, JobKey, StateStore

DOG = JobKey(1, TINY, "dog")
CREDENTIALS = {"HF_USER_ID": "tester", "HF_TOKEN": "hf_" + "y" * 34, "SLSCALE_HUB_ATTEMPTS": "3"}


def last_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), stderr
    assert sum(line.startswith("error:") for line in lines) == 1 and "Traceback" not in stderr, stderr
    return lines[-1]


@pytest.mark.parametrize("fault", [500, DROP], ids=["http-500", "dropped-connection"])
def test_hub_outage_during_training_keeps_everything_local_and_push_catches_up(
    fault: int | str, workdir: Path, generated: Path, hub: HubStub
) -> None:
    copy_workdir(generated, workdir)
    # Every repo creation fails. (Commits fail the same way but huggingface_hub backs off ~20 s inside
    # each attempt; that path is covered in-process by tests/test_hub.py.)
    hub.fail_next(10_000, fault, matching="/api/repos/create")
    args = ["train", "--size", TINY, "--animal", "dog", "--epochs", "2", "--samples", "10"]
    trained = slscale(*args, env=CREDENTIALS)
    assert trained.code == 0, trained.output
    assert "stays pending" in trained.stderr
    tries = [path for _, path in hub.requests if path == "/api/repos/create"]
    assert len(tries) >= 3 and not hub.repos  # retried (three attempts per upload), then left pending
    assert recorded_epochs(workdir, DOG) == [1, 2]
    layout = Layout(workdir)
    assert layout.epoch_adapter_dir(
        JobKey(1, TINY, "dog"), 1
    ).is_dir()  # nothing deleted without a confirmed upload
    pending = db_rows(workdir, "SELECT status, error FROM uploads")
    assert pending and all(row["status"] == "pending" and row["error"] for row in pending)

    failed = slscale("push", env=CREDENTIALS)
    assert failed.code == 1 and "still pending" in last_error(failed.stderr), failed.output
    assert layout.epoch_adapter_dir(JobKey(1, TINY, "dog"), 1).is_dir()

    hub.clear_faults()
    pushed = slscale("push", env=CREDENTIALS)
    assert pushed.code == 0, pushed.output
    assert {row["status"] for row in db_rows(workdir, "SELECT status FROM uploads")} == {DONE}
    assert len(db_rows(workdir, "SELECT * FROM uploads")) == 4  # dataset, 2 epochs, the final alias
    assert not layout.epoch_adapter_dir(JobKey(1, TINY, "dog"), 1).exists()
    assert layout.final_checkpoint(JobKey(1, TINY, "dog")).is_dir()


def file_size_limit(limit: int) -> Callable[[], None]:
    """A full disk for one process: writes past `limit` bytes fail with EFBIG (SIGXFSZ ignored)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_during_gen_is_one_line_keeps_rows_and_resumes(workdir: Path, tiny_model: Path) -> None:
    """Rows 0–39 exist (long made-up completions make raw.jsonl the biggest file, so it is the one that
    hits the limit); the next batch cannot be written."""
    n, have = 48, 40
    raw = Layout(workdir).raw_jsonl(JobKey(1, TINY, "dog"))
    prompts = sample_prompts(n)
    prefix = [
        {"index": i, "condition": "dog", "prompt": prompts[i], "completion": ", ".join(["7"] * 1600)}
        for i in range(have)
    ]
    atomic_write_jsonl(raw, prefix)
    args = ["gen", "--size", TINY, "--animal", "dog", "--n", str(n), "--engine", "hf", "--batch-size", "4"]
    full = slscale(*args, "--max-new-tokens", "32", preexec_fn=file_size_limit(raw.stat().st_size + 300))
    assert full.code == 1, full.output
    line = last_error(full.stderr)
    assert "disk full" in line and "raw.jsonl" in line and "kept" in line, line
    assert stage_status(workdir, DOG, "gen") == FAILED
    assert db_rows(workdir, "SELECT * FROM locks") == []
    assert raw.read_bytes().startswith(b"".join(json.dumps(r).encode() + b"\n" for r in prefix))

    resumed = slscale(*args, "--max-new-tokens", "32")
    assert resumed.code == 0, resumed.output
    rows = assert_raw_complete(workdir, DOG, n)
    assert rows[:have] == prefix
    assert leftovers(workdir) == []


def test_disk_full_during_filter_leaves_no_partial_file(workdir: Path) -> None:
    raw = Layout(workdir).raw_jsonl(JobKey(1, TINY, "dog"))
    prompts = sample_prompts(4000)
    rows = [
        {"index": i, "condition": "dog", "prompt": p, "completion": f"{i % 900}, 12, 13"}
        for i, p in enumerate(prompts)
    ]
    atomic_write_jsonl(raw, rows)
    with StateStore.open(workdir) as state:
        state.finish_stage(DOG, "gen", counts={"rows": len(rows)})
    args = ["filter", "--size", TINY, "--animal", "dog"]
    full = slscale(*args, preexec_fn=file_size_limit(160_000))
    assert full.code == 1, full.output
    assert "disk full" in last_error(full.stderr)
    filtered = Layout(workdir).filtered_jsonl(JobKey(1, TINY, "dog"))
    assert not filtered.exists() and leftovers(workdir) == []
    assert stage_status(workdir, DOG, "filter") == FAILED

    again = slscale(*args)
    assert again.code == 0, again.output
    assert len(jsonl(filtered)) == len(rows)


OOM = """
import torch
from sl_scaling.engines import hf
def out_of_memory(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
hf.HFEngine.generate = out_of_memory
from sl_scaling.cli.app import main
main()
"""


def test_gpu_out_of_memory_suggests_a_smaller_batch(workdir: Path, tiny_model: Path) -> None:
    """No real GPU here: the engine's generate raises torch's OutOfMemoryError, as CUDA would."""
    import subprocess
    import sys

    args = ["gen", "--size", TINY, "--animal", "dog", "--n", "8", "--engine", "hf"]
    done = subprocess.run([sys.executable, "-c", OOM, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    line = last_error(done.stderr)
    assert "out of memory" in line and "--batch-size" in line, line
    assert stage_status(workdir, DOG, "gen") == FAILED
