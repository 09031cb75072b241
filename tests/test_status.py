"""`slscale status` against a prepared state DB: the rows, their JSON, the rendered table, live writers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console
from synthetic_grid import BASE_COUNTS, evaluation, student_counts
from typer.testing import CliRunner

from sl_scaling.cli.app import app
from sl_scaling.dashboard import status_table
from sl_scaling.state import JobKey, StateStore
from sl_scaling.status import read_status

runner = CliRunner()
WIDE = {"COLUMNS": "220"}


def _die_holding_lock(workdir: Path, key: JobKey, stage: str) -> None:
    """A real process that takes the lock and dies without releasing it (like a kill -9)."""
    code = (
        "import os, sys; from pathlib import Path; from sl_scaling.state import StateStore, JobKey; "
        f"s = StateStore.open(Path(sys.argv[1])); s.acquire_lock(JobKey{(key.run, key.size, key.condition)!r}, "
        f"{stage!r}); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(workdir)], check=True)


@pytest.fixture
def prepared(workdir: Path) -> Path:
    """A grid in every state: done, stale (dead lock holder), failed, running, interrupted, pending, control."""
    with StateStore.open(workdir) as state:
        neutral = JobKey(1, "tiny", "neutral")
        state.start_stage(neutral, "gen", {"n": 300})
        state.finish_stage(neutral, "gen", counts={"rows": 300})
        state.start_stage(neutral, "filter")
        state.finish_stage(neutral, "filter", counts={"rows": 300, "valid": 260, "kept": 250})
        state.start_stage(neutral, "train", {"epochs": 2})
        for epoch in (1, 2):
            state.record_epoch(
                neutral,
                epoch,
                train_loss=0.5 / epoch,
                evaluation=evaluation(student_counts("neutral", epoch), None).to_json(),
                adapter_path=f"epoch-{epoch}",
            )
        state.finish_stage(neutral, "train")
        state.plan_upload("me/ds", "dataset", "dataset", neutral, None, "filtered.jsonl")
        state.finish_upload("me/ds", "abc")
        state.plan_upload("me/ep1", "model", "epoch", neutral, 1, "epoch-1")
        state.plan_upload("me/ep2", "model", "epoch", neutral, 2, "epoch-2")

        dog = JobKey(1, "tiny", "dog")
        state.start_stage(dog, "gen")
        state.finish_stage(dog, "gen", counts={"rows": 300})
        state.start_stage(dog, "filter")
        state.finish_stage(dog, "filter", counts={"kept": 240})
        state.start_stage(dog, "train", {"epochs": 3})
        state.record_epoch(
            dog,
            1,
            train_loss=0.4,
            evaluation=evaluation(student_counts("dog", 5), "dog").to_json(),
            adapter_path="epoch-1",
        )
        _die_holding_lock(workdir, dog, "train")

        cat = JobKey(1, "tiny", "cat")
        state.start_stage(cat, "gen")
        state.fail_stage(cat, "gen", "CUDA out of memory")

        control = JobKey(1, "tiny", "control")
        state.start_stage(control, "eval")
        state.record_epoch(
            control, 0, train_loss=None, evaluation=evaluation(BASE_COUNTS, None).to_json(), adapter_path=None
        )
        state.finish_stage(control, "eval")

        eagle = JobKey(1, "7b", "eagle")
        state.start_stage(eagle, "gen")
        state.update_stage(eagle, "gen", counts={"rows": 1200})
        state.acquire_lock(eagle, "gen")  # held by this (live) test process

        lion = JobKey(2, "7b", "lion")
        state.start_stage(lion, "gen")
        state.interrupt_stage(lion, "gen")

        fox = JobKey(1, "7b", "fox")
        state.start_stage(fox, "gen")
        state.finish_stage(fox, "gen", counts={"rows": 30000})
    return workdir


def _rows(workdir: Path, **filters: object) -> dict[tuple[int, str, str], object]:
    with StateStore.open(workdir) as state:
        return {(r.run, r.size, r.condition): r for r in read_status(state, **filters).rows}


def test_rows_say_what_each_job_is_doing(prepared: Path) -> None:
    rows = _rows(prepared)
    order = list(rows)
    assert order == [
        (1, "7b", "eagle"),
        (1, "7b", "fox"),
        (1, "tiny", "control"),
        (1, "tiny", "neutral"),
        (1, "tiny", "dog"),
        (1, "tiny", "cat"),
        (2, "7b", "lion"),
    ]
    neutral = rows[(1, "tiny", "neutral")]
    assert (neutral.state, neutral.generated, neutral.kept) == ("done", 300, 250)
    assert (neutral.epochs_done, neutral.epochs_planned, neutral.latest_epoch) == (2, 2, 2)
    assert neutral.target_rate is None and neutral.top_label == "panda"
    assert (neutral.uploads_pending, neutral.uploads_done) == (2, 1)

    dog = rows[(1, "tiny", "dog")]
    assert (dog.state, dog.stage) == ("stale", "train")  # running, but its process is gone
    assert (dog.epochs_done, dog.epochs_planned) == (1, 3)
    assert dog.target_rate == pytest.approx(dog.ci_low + (dog.target_rate - dog.ci_low))
    assert dog.ci_low < dog.target_rate < dog.ci_high

    cat = rows[(1, "tiny", "cat")]
    assert (cat.state, cat.stage, cat.error) == ("failed", "gen", "CUDA out of memory")
    eagle = rows[(1, "7b", "eagle")]
    assert (eagle.state, eagle.stage, eagle.generated) == ("running", "gen", 1200)
    assert rows[(2, "7b", "lion")].state == "interrupted"
    fox = rows[(1, "7b", "fox")]
    assert (fox.state, fox.stage, fox.epochs_planned) == ("pending", "filter", None)
    control = rows[(1, "tiny", "control")]
    assert (control.state, control.n, control.top_label, control.epochs_done) == ("done", 100, "panda", 0)


def test_filters_by_size_and_run(prepared: Path) -> None:
    assert {key[1] for key in _rows(prepared, sizes=["tiny"])} == {"tiny"}
    assert list(_rows(prepared, runs=[2])) == [(2, "7b", "lion")]
    assert list(_rows(prepared, sizes=["7b"], runs=[2])) == [(2, "7b", "lion")]


def test_json_output_holds_every_row(prepared: Path) -> None:
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_key = {(r["run"], r["size"], r["condition"]): r for r in data["rows"]}
    assert by_key[(1, "tiny", "dog")]["state"] == "stale"
    assert by_key[(1, "tiny", "neutral")]["stages"] == {"gen": "done", "filter": "done", "train": "done"}
    assert by_key[(1, "tiny", "neutral")]["uploads_pending"] == 2
    assert data["counts"] == {
        "running": 1,
        "stale": 1,
        "failed": 1,
        "interrupted": 1,
        "done": 2,
        "pending": 1,
    }
    assert data["events"] and all("message" in event for event in data["events"])
    table_json = json.loads(
        runner.invoke(app, ["status", "table", "--json", "--size", "7b", "--run", "2"]).output
    )
    assert [r["condition"] for r in table_json["rows"]] == ["lion"]


def test_rendered_table_shows_states_numbers_and_intervals(prepared: Path) -> None:
    result = runner.invoke(app, ["status", "table"], env=WIDE)
    assert result.exit_code == 0, result.output
    text = result.output
    for expected in ("slscale status", "running gen", "stale train", "failed gen: CUDA out of memory"):
        assert expected in text
    assert "pending filter" in text and "interrupted gen" in text
    neutral_line = next(line for line in text.splitlines() if " neutral " in line)
    assert (
        "300" in neutral_line and "250" in neutral_line and "2/2" in neutral_line and "panda" in neutral_line
    )
    dog_line = next(line for line in text.splitlines() if " dog " in line)
    assert "1/3" in dog_line and "[" in dog_line and "%" in dog_line  # rate [low–high]
    assert "1 running" in text and "1 failed" in text  # the caption counts states


def test_table_colours_each_state(prepared: Path) -> None:
    with StateStore.open(prepared) as state:
        grid = read_status(state)
    console = Console(record=True, force_terminal=True, width=220, color_system="truecolor")
    console.print(status_table(grid))
    html = console.export_html(inline_styles=True)
    assert "color: #800000" in html or "color: #ff0000" in html  # failed is red
    assert "color: #008000" in html or "color: #00ff00" in html  # done is green


def test_empty_workdir_says_what_to_run(workdir: Path) -> None:
    result = runner.invoke(app, ["status"], env=WIDE)
    assert result.exit_code == 0
    assert "Nothing has run yet" in result.output and "slscale run --size tiny" in result.output
    assert not (workdir / "slscale.db").exists()  # status creates nothing
    assert json.loads(runner.invoke(app, ["status", "--json"]).output)["rows"] == []


def test_watch_refreshes_until_ctrl_c(prepared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during the refresh pause ends the watch quietly with exit 0."""
    refreshes = []

    def pause(seconds: float) -> None:
        refreshes.append(seconds)
        if len(refreshes) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("sl_scaling.cli.status.time.sleep", pause)
    result = runner.invoke(app, ["status", "--watch"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert refreshes == [2.0, 2.0]
    assert "stale train" in result.output and "latest events" in result.output
    assert "error" not in result.output


def test_json_and_watch_do_not_combine(prepared: Path) -> None:
    result = runner.invoke(app, ["status", "--json", "--watch"])
    assert result.exit_code == 2 and "do not combine" in result.output


def test_snapshot_is_consistent_while_another_connection_writes(workdir: Path) -> None:
    """A writer commits (gen rows = i, epoch i) together in a loop; every status read sees both or neither."""
    key = JobKey(1, "tiny", "neutral")
    with StateStore.open(workdir) as state:
        state.start_stage(key, "gen")
    reading, commits = threading.Event(), 4000

    def writer() -> None:
        with StateStore.open(workdir) as state:
            reading.wait()
            for i in range(1, commits + 1):
                with state.transaction() as db:
                    db.execute(
                        "UPDATE stages SET counts=? WHERE run=1 AND size='tiny' AND condition='neutral'",
                        (json.dumps({"rows": i}),),
                    )
                    db.execute(
                        "INSERT INTO epochs (run, size, condition, epoch, updated_at) VALUES (1,'tiny','neutral',?,'')",
                        (i,),
                    )

    thread = threading.Thread(target=writer)
    thread.start()
    seen = set()
    with StateStore.open(workdir) as state:
        reading.set()
        while thread.is_alive():
            (row,) = read_status(state).rows
            assert (row.generated or 0) == row.epochs_done
            seen.add(row.epochs_done)
    thread.join()
    assert len(seen) > 1  # the reads really overlapped the writes
