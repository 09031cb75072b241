"""`slscale run`'s plan: what the DB says is done is skipped, everything else is planned in order."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sl_scaling.catalog import CONTROL
from sl_scaling.cli.app import app
from sl_scaling.pipeline import RunOptions, plan_grid, required_disk_bytes
from sl_scaling.state import JobKey, StateStore


def test_plan_covers_every_stage_in_order_largest_size_first(workdir):
    with StateStore.open(workdir) as state:
        steps = plan_grid(state, ["7b", "0.5b"], ["neutral", "dog"], RunOptions())
    assert [(s.size, s.stage) for s in steps] == [
        ("7b", "gen"),
        ("7b", "filter"),
        ("7b", "train"),
        ("7b", "eval"),
        ("7b", "plot"),
        ("0.5b", "gen"),
        ("0.5b", "filter"),
        ("0.5b", "train"),
        ("0.5b", "eval"),
        ("0.5b", "plot"),
    ]
    assert steps[0].todo == ("neutral", "dog")
    assert steps[3].conditions == (CONTROL,)


def test_plan_skips_what_the_db_says_is_done(workdir):
    with StateStore.open(workdir) as state:
        for condition in ("neutral", "dog"):
            state.start_stage(JobKey(1, "tiny", condition), "gen")
            state.finish_stage(JobKey(1, "tiny", condition), "gen")
        state.start_stage(JobKey(1, "tiny", "dog"), "filter")  # started, never finished: still to do
        steps = plan_grid(state, ["tiny"], ["neutral", "dog"], RunOptions())
    by_stage = {s.stage: s for s in steps}
    assert by_stage["gen"].todo == ()
    assert by_stage["filter"].todo == ("neutral", "dog")
    assert by_stage["eval"].todo == (CONTROL,)


def test_replicate_runs_are_planned_separately(workdir):
    with StateStore.open(workdir) as state:
        state.start_stage(JobKey(1, "tiny", "dog"), "gen")
        state.finish_stage(JobKey(1, "tiny", "dog"), "gen")
        run2 = plan_grid(state, ["tiny"], ["dog"], RunOptions(run=2))
    assert run2[0].todo == ("dog",)


def test_tiny_gets_laptop_sized_defaults_and_flags_override_them():
    assert RunOptions().for_size("tiny").n == 300
    assert RunOptions().for_size("7b").n == 30_000
    assert RunOptions(n=50, epochs=1).for_size("tiny").epochs == 1


def test_disk_estimate_counts_only_remaining_work(workdir):
    with StateStore.open(workdir) as state:
        fresh = plan_grid(state, ["tiny"], ["neutral", "dog"], RunOptions())
        for condition in ("neutral", "dog"):
            for stage in ("gen", "train"):
                state.start_stage(JobKey(1, "tiny", condition), stage)
                state.finish_stage(JobKey(1, "tiny", condition), stage)
        finished = plan_grid(state, ["tiny"], ["neutral", "dog"], RunOptions())
    assert required_disk_bytes(fresh, RunOptions()) > 0
    assert required_disk_bytes(finished, RunOptions()) == 0


def test_dry_run_prints_the_plan_as_json_and_runs_nothing(workdir):
    result = CliRunner().invoke(app, ["run", "--size", "tiny", "--animal", "dog", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert [step["stage"] for step in plan] == ["gen", "filter", "train", "eval", "plot"]
    assert not (workdir / "data").exists()


def test_dry_run_estimates_come_from_the_bench_record_for_gpu_sizes_only(workdir):
    from sl_scaling.pipeline import with_estimates

    with StateStore.open(workdir) as state:
        steps = with_estimates(plan_grid(state, ["7b", "tiny"], ["dog"], RunOptions()), RunOptions())
    by_key = {(s.size, s.stage): s.estimate_s for s in steps}
    assert by_key[("7b", "gen")] > 0 and by_key[("7b", "train")] > by_key[("7b", "gen")]
    assert by_key[("tiny", "gen")] is None and by_key[("7b", "plot")] is None
