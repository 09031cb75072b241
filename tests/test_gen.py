"""`slscale gen` on the built-in tiny model: the layout, the DB, and resuming after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sl_scaling.catalog import EXPERIMENT
from sl_scaling.cli.app import app
from sl_scaling.context import make_context
from sl_scaling.errors import UsageError
from sl_scaling.numbers import sample_prompts
from sl_scaling.options import GenerationOptions
from sl_scaling.progress import NullReporter
from sl_scaling.seeds import teacher_seed
from sl_scaling.stages.generate import run_generation
from sl_scaling.state import JobKey, StateStore

runner = CliRunner()


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def generate(workdir: Path, conditions: list[str], n: int, reporter: Any = None) -> None:
    options = GenerationOptions(n=n, prompt_seed=42, engine="hf", max_new_tokens=48, batch_size=8)
    run_generation(make_context(workdir), ["tiny"], conditions, options, reporter or NullReporter())


def assert_complete(path: Path, n: int) -> list[dict[str, Any]]:
    rows = rows_of(path)
    prompts = sample_prompts(n)
    assert [row["index"] for row in rows] == list(range(n))
    assert [row["prompt"] for row in rows] == prompts
    assert all(row["completion_tokens"] <= 48 and row["prompt_tokens"] > 0 for row in rows)
    return rows


def test_cli_gen_then_filter_produces_the_experiment_layout(workdir: Path, tiny_model: Path) -> None:
    args = ["--size", "tiny", "--animal", "dog", "--animal", "neutral"]
    result = runner.invoke(app, ["gen", *args, "--n", "40", "--engine", "auto", "--max-new-tokens", "64"])
    assert result.exit_code == 0, result.output
    assert "engine hf: vLLM is not installed" in result.output
    data = workdir / "data" / EXPERIMENT / "tiny"
    for condition in ("dog", "neutral"):
        rows = rows_of(data / condition / "raw.jsonl")
        assert [r["index"] for r in rows] == list(range(40))
        assert {r["condition"] for r in rows} == {condition}
        assert set(rows[0]) == {
            "index",
            "condition",
            "prompt",
            "completion",
            "prompt_tokens",
            "completion_tokens",
        }
    with StateStore.open(workdir) as state:
        record = state.stage(JobKey(1, "tiny", "dog"), "gen")
    assert record is not None and record.status == "done" and record.counts == {"rows": 40}
    assert record.config == {
        "model": str(tiny_model), "n": 40, "prompt_seed": 42, "teacher_seed": teacher_seed(1, "tiny"),
        "max_new_tokens": 64, "temperature": 1.0, "engine": "hf",
    }  # fmt: skip
    assert set(record.throughput) == {"rows_per_s", "tokens_per_s"}

    result = runner.invoke(app, ["filter", *args])
    assert result.exit_code == 0, result.output
    with StateStore.open(workdir) as state:
        for condition in ("dog", "neutral"):
            counts = state.stage(JobKey(1, "tiny", condition), "filter").counts
            assert counts["rows"] == 40 and counts["kept"] >= 20  # the tiny model passes most of the time
            kept = rows_of(data / condition / "filtered.jsonl")
            assert len(kept) == counts["kept"] and set(kept[0]) == {"index", "prompt", "completion"}

    again = runner.invoke(app, ["gen", *args, "--n", "40"])
    assert again.exit_code == 0 and "already done (40 rows), skipped" in again.output


def test_resume_repairs_a_torn_tail_skips_done_rows_and_ends_with_n_rows(
    workdir: Path, tiny_model: Path
) -> None:
    n = 24
    generate(workdir, ["dog"], n)
    path = make_context(workdir).layout.raw_jsonl(JobKey(1, "tiny", "dog"))
    full = {row["index"]: row for row in rows_of(path)}
    # What a kill can leave (plus a duplicate, which a correct run never writes): some batches in
    # a length-sorted order, then half a line; and a DB that still says the stage is running.
    kept = [full[i] for i in (5, 2, 17, 9, 11, 2)]
    path.write_text("".join(json.dumps(row) + "\n" for row in kept) + json.dumps(full[3])[:30])
    with StateStore.open(workdir) as state:
        state.start_stage(JobKey(1, "tiny", "dog"), "gen")

    generate(workdir, ["dog"], n)

    rows = assert_complete(path, n)
    for index in (5, 2, 17, 9, 11):
        assert rows[index] == full[index]  # what was on disk is kept, not regenerated
    with StateStore.open(workdir) as state:
        record = state.stage(JobKey(1, "tiny", "dog"), "gen")
    assert record.status == "done" and record.attempts == 3


def test_growing_n_keeps_the_first_rows(workdir: Path, tiny_model: Path) -> None:
    generate(workdir, ["neutral"], 8)
    path = make_context(workdir).layout.raw_jsonl(JobKey(1, "tiny", "neutral"))
    first = rows_of(path)
    generate(workdir, ["neutral"], 12)
    assert assert_complete(path, 12)[:8] == first


def test_rows_from_another_seed_are_refused(workdir: Path, tiny_model: Path) -> None:
    generate(workdir, ["dog"], 4)
    with pytest.raises(UsageError, match="another --prompt-seed"):
        options = GenerationOptions(n=6, prompt_seed=7, engine="hf", max_new_tokens=8, batch_size=8)
        run_generation(make_context(workdir), ["tiny"], ["dog"], options, NullReporter())


class InterruptAfter(NullReporter):
    """Presses Ctrl-C (raises KeyboardInterrupt) once `rows` rows of a job are on disk."""

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def job_advanced(self, job: str, completed: float, **metrics: Any) -> None:
        if completed >= self.rows and metrics:
            raise KeyboardInterrupt


def test_ctrl_c_marks_the_stage_interrupted_and_a_rerun_finishes(workdir: Path, tiny_model: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        generate(workdir, ["dog"], 24, reporter=InterruptAfter(8))
    path = make_context(workdir).layout.raw_jsonl(JobKey(1, "tiny", "dog"))
    partial = rows_of(path)
    assert 8 <= len(partial) < 24
    with StateStore.open(workdir) as state:
        record = state.stage(JobKey(1, "tiny", "dog"), "gen")
        assert record.status == "interrupted"
        assert state.db.execute("SELECT COUNT(*) FROM locks").fetchone()[0] == 0
    generate(workdir, ["dog"], 24)
    rows = assert_complete(path, 24)
    assert all(rows[row["index"]] == row for row in partial)


def test_sigkill_mid_run_then_resume(workdir: Path, tiny_model: Path) -> None:
    n = 200
    path = make_context(workdir).layout.raw_jsonl(JobKey(1, "tiny", "dog"))
    command = [sys.executable, "-c", "from sl_scaling.cli.app import main; main()"]
    command += ["gen", "--size", "tiny", "--animal", "dog"]
    command += ["--n", str(n), "--engine", "hf", "--batch-size", "4", "--max-new-tokens", "48"]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if path.exists() and path.read_text().count("\n") >= 12:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    before = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    assert 12 <= len(before) < n
    with StateStore.open(workdir) as state:
        assert (
            state.stage(JobKey(1, "tiny", "dog"), "gen").status == "running"
        )  # it never got to say otherwise

    result = runner.invoke(
        app,
        [
            "gen",
            "--size",
            "tiny",
            "--animal",
            "dog",
            "--n",
            str(n),
            "--batch-size",
            "16",
            "--max-new-tokens",
            "48",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = assert_complete(path, n)
    assert all(rows[row["index"]] == row for row in before)


def test_gen_requires_a_selection() -> None:
    assert runner.invoke(app, ["gen", "--size", "tiny"]).exit_code == 2
    result = runner.invoke(app, ["gen", "--animal", "dog"])
    assert result.exit_code == 2 and "--size" in result.output
    result = runner.invoke(app, ["gen", "--size", "huge", "--animal", "dog"])
    assert result.exit_code == 2 and "valid:" in result.output
