"""Executors: the jobs and their dependencies, retries and skips, and a `tiny` grid through Ray on CPU
giving the same files and DB rows as the local executor."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sl_scaling.catalog import CONTROL, Layout
from sl_scaling.cli.app import app
from sl_scaling.context import Context, make_context
from sl_scaling.errors import MissingPrerequisiteError, OptionalDependencyError
from sl_scaling.executors import make_executor
from sl_scaling.executors.base import Job
from sl_scaling.executors.local import LocalExecutor
from sl_scaling.pipeline import RunOptions, build_jobs, plan_grid
from sl_scaling.progress import EventsOnce, NullReporter, PlainReporter, Reporter
from sl_scaling.state import JobKey, StateStore

TINY_GRID = ["--size", "tiny", "--animal", "neutral", "--animal", "dog", "--epochs", "1", "--n", "60"]
TINY_GRID += ["--samples", "10", "--no-push"]


def jobs_for(workdir: Path, options: RunOptions, sizes: list[str], gpus_per_node: int = 1) -> list[Job]:
    with StateStore.open(workdir) as state:
        return build_jobs(plan_grid(state, sizes, ["neutral", "dog"], options), options, gpus_per_node)


# --- jobs from the plan ---------------------------------------------------------------------------


def test_jobs_follow_the_plan_with_their_dependencies(workdir):
    jobs = jobs_for(workdir, RunOptions(), ["tiny"])
    assert [(j.id, j.depends_on, j.gpus) for j in jobs] == [
        ("gen tiny", (), 1),
        ("filter tiny/neutral", ("gen tiny",), 0),
        ("filter tiny/dog", ("gen tiny",), 0),
        ("train tiny/neutral", ("filter tiny/neutral",), 1),
        ("train tiny/dog", ("filter tiny/dog",), 1),
        ("eval tiny/control", (), 1),
        ("plot tiny", ("train tiny/neutral", "train tiny/dog", "eval tiny/control"), 0),
    ]
    assert jobs[0].conditions == ("neutral", "dog")
    assert jobs[5].keys == [JobKey(1, "tiny", CONTROL)]


def test_without_gpus_trainings_run_in_lanes_beside_the_control_evaluation(workdir):
    """One training process per lane (a core), each with its share of the conditions; one lane: one job."""
    by_id = {
        j.id: (j.depends_on, j.gpus) for j in jobs_for(workdir, RunOptions(trainings_per_gpu=2), ["tiny"], 0)
    }
    assert by_id["train tiny/neutral"] == (("filter tiny/neutral",), 0.5)
    assert by_id["train tiny/dog"] == (("filter tiny/dog",), 0.5)
    assert by_id["eval tiny/control"] == ((), 0)
    one = {
        j.id: (j.depends_on, j.gpus) for j in jobs_for(workdir, RunOptions(trainings_per_gpu=1), ["tiny"], 0)
    }
    assert one["train tiny/neutral+dog"] == (("filter tiny/neutral", "filter tiny/dog"), 1)


def say_notices(ctx: Context, job: Job, reporter: Reporter) -> None:
    """A lane's body: the notice every lane gives, then a line of its own."""
    reporter.event("W&B: no login, logging offline")
    reporter.event(f"{job.id}: done")


def test_a_notice_from_every_lane_is_shown_once_and_job_lines_all(workdir):
    """Two training lanes in their own processes both give the same notice: the run shows it once."""
    lanes = [Job("train", "tiny", (c,), gpus=0.5) for c in ("neutral", "dog")]
    shown = io.StringIO()
    outcomes = LocalExecutor().execute(
        make_context(None), lanes, say_notices, EventsOnce(PlainReporter(shown))
    )
    assert [o.status for o in outcomes] == ["done", "done"]
    lines = shown.getvalue().splitlines()
    assert sum("W&B: no login" in line for line in lines) == 1
    assert sum(line.endswith(("train tiny/neutral: done", "train tiny/dog: done")) for line in lines) == 2


def test_finished_work_makes_no_job_and_no_dependency(workdir):
    with StateStore.open(workdir) as state:
        for stage in ("gen", "filter"):
            for condition in ("neutral", "dog"):
                state.start_stage(JobKey(1, "tiny", condition), stage)
                state.finish_stage(JobKey(1, "tiny", condition), stage)
    jobs = jobs_for(workdir, RunOptions(control=False, plots=False), ["tiny"])
    assert [(j.id, j.depends_on) for j in jobs] == [("train tiny/neutral", ()), ("train tiny/dog", ())]


def test_large_sizes_generate_on_all_of_a_machines_gpus_unless_told(workdir):
    by_id = {j.id: j.gpus for j in jobs_for(workdir, RunOptions(), ["32b", "14b", "7b"], gpus_per_node=8)}
    assert (by_id["gen 32b"], by_id["gen 14b"], by_id["gen 7b"]) == (8, 8, 1)
    assert by_id["train 32b/dog"] == 1
    told = {j.id: j.gpus for j in jobs_for(workdir, RunOptions(tensor_parallel=2), ["32b", "7b"], 8)}
    assert (told["gen 32b"], told["gen 7b"]) == (2, 2)
    assert jobs_for(workdir, RunOptions(), ["32b"], gpus_per_node=1)[0].gpus == 1


# --- failures: retried, then failed; dependents skipped; the rest goes on ---------------------------


class Failing:
    """A job body that fails for the chosen jobs and records every attempt (the executor's input)."""

    def __init__(self, failing: dict[str, Exception]) -> None:
        self.failing = failing
        self.calls: list[str] = []

    def __call__(self, ctx: Context, job: Job, reporter: Reporter) -> None:
        self.calls.append(job.id)
        if job.id in self.failing:
            raise self.failing[job.id]


def test_a_failing_job_is_retried_then_failed_and_only_its_dependents_are_skipped(workdir):
    ctx = make_context(None)
    jobs = jobs_for(workdir, RunOptions(), ["tiny"])
    work = Failing({"filter tiny/dog": OSError("disk went away")})
    outcomes = {o.job.id: o for o in LocalExecutor(max_retries=2).execute(ctx, jobs, work, NullReporter())}
    assert work.calls.count("filter tiny/dog") == 3
    assert (outcomes["filter tiny/dog"].status, outcomes["filter tiny/dog"].attempts) == ("failed", 3)
    assert outcomes["train tiny/dog"].status == "skipped"
    assert outcomes["plot tiny"].status == "skipped"
    assert "train tiny/dog" not in work.calls and "plot tiny" not in work.calls
    assert {
        o.status for i, o in outcomes.items() if i not in ("filter tiny/dog", "train tiny/dog", "plot tiny")
    } == {"done"}
    with StateStore.open(workdir) as state:
        record = state.stage(JobKey(1, "tiny", "dog"), "filter")
        assert record is not None and record.status == "failed"
        assert record.error == "OSError: disk went away (3 attempts)"
        kinds = [e["kind"] for e in state.events(limit=50)]
    assert kinds.count("retry") == 2 and kinds.count("skip") == 1  # the plot job writes no DB rows


def test_our_own_errors_are_not_retried(workdir):
    ctx = make_context(None)
    jobs = jobs_for(workdir, RunOptions(plots=False), ["tiny"])
    work = Failing({"gen tiny": MissingPrerequisiteError("no model")})
    outcomes = LocalExecutor(max_retries=2).execute(ctx, jobs, work, NullReporter())
    assert work.calls == ["gen tiny", "eval tiny/control"]
    assert [o.status for o in outcomes] == ["failed", "skipped", "skipped", "skipped", "skipped", "done"]


def test_worker_environment_keeps_credentials_out_of_the_runtime_env():
    pytest.importorskip("ray")
    from sl_scaling.executors.ray import worker_environment

    plain, secret = worker_environment(
        {
            "HF_TOKEN": "hf_x",
            "WANDB_API_KEY": "k",
            "HF_HUB_OFFLINE": "1",
            "SLSCALE_WORKDIR": "/w",
            "PATH": "/bin",
        }
    )
    assert plain == {"HF_HUB_OFFLINE": "1", "SLSCALE_WORKDIR": "/w"}
    assert secret == {"HF_TOKEN": "hf_x", "WANDB_API_KEY": "k"}


def test_ray_missing_names_the_cluster_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "sl_scaling.executors.ray", raising=False)
    with pytest.raises(OptionalDependencyError, match=r"sl-scaling\[cluster\]"):
        make_executor("ray", make_context(None).settings, max_retries=0)


# --- through Ray, on this machine's CPUs ------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray instance for the module (starting one costs 10-20 s); executors reuse it."""
    ray = pytest.importorskip("ray")
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING"
    )
    yield
    ray.shutdown()


def _run(workdir: Path, *extra: str) -> str:
    result = CliRunner().invoke(app, ["run", *TINY_GRID, "--workdir", str(workdir), *extra])
    assert result.exit_code == 0, result.output
    return result.output


def _files(workdir: Path) -> set[str]:
    """Every file the run left, logs by stage and size (their names carry the time)."""
    names = set()
    for path in workdir.rglob("*"):
        if path.is_file() and not path.name.startswith("slscale.db"):
            relative = path.relative_to(workdir)
            if relative.parts[0] == "logs":
                relative = relative.parent / "_".join(path.name.split("_")[:2])
            names.add(str(relative))
    return names


def _db(workdir: Path) -> dict[str, object]:
    with StateStore.open(workdir) as state:
        return {
            "stages": sorted(
                (str(r.key), r.stage, r.status, r.attempts, r.counts.get("rows")) for r in state.stages()
            ),
            "epochs": sorted(
                (str(e.key), e.epoch, e.n, Path(e.adapter_path or "").name) for e in state.all_epochs()
            ),
            "locks": state.db.execute("SELECT COUNT(*) FROM locks").fetchone()[0],
        }


def _shape(value: object) -> object:
    """A JSON value's structure: keys and list lengths, not the sampled numbers."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in ("evaluated_at", "adapter", "model")}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


@pytest.mark.slow
def test_a_tiny_grid_through_ray_leaves_what_the_local_executor_leaves(workdir, tiny_model, ray_cluster):
    local, distributed = workdir / "local", workdir / "ray"
    _run(local, "--no-plots")
    _run(distributed, "--no-plots", "--executor", "ray")
    assert _files(distributed) == _files(local)
    assert _db(distributed) == _db(local)
    stages = {(s[0], s[1]): s[2] for s in _db(distributed)["stages"]}  # type: ignore[index]
    assert set(stages.values()) == {"done"} and len(stages) == 7  # gen, filter, train ×2, control eval
    for condition in ("neutral", "dog", CONTROL):
        ours, theirs = (
            json.loads(Layout(d).eval_json(JobKey(1, "tiny", condition)).read_text())
            for d in (local, distributed)
        )
        assert _shape(theirs) == _shape(ours)
        assert [e["epoch"] for e in theirs["epochs"]] == [e["epoch"] for e in ours["epochs"]]


@pytest.mark.slow
def test_through_ray_a_dying_job_is_retried_then_failed_and_the_rest_goes_on(
    workdir, tiny_model, ray_cluster
):
    layout = make_context(None).layout
    blocked = layout.raw_jsonl(JobKey(1, "tiny", "dog"))
    blocked.mkdir(parents=True)  # a directory where generation must write its file: fails every time
    result = CliRunner().invoke(app, ["run", *TINY_GRID, "--executor", "ray", "--max-retries", "1"])
    assert result.exit_code == 1, result.output
    assert "gen tiny" in result.output and "skipped" in result.output
    with StateStore.open(workdir) as state:
        gen = state.stage(JobKey(1, "tiny", "dog"), "gen")
        assert gen is not None and gen.status == "failed" and "(2 attempts)" in (gen.error or "")
        assert state.is_done(JobKey(1, "tiny", CONTROL), "eval")  # independent of generation: finished
        assert not state.is_done(JobKey(1, "tiny", "neutral"), "train")
        kinds = [e["kind"] for e in state.events(limit=100)]
    assert kinds.count("retry") == 1
    assert kinds.count("skip") == 4  # filter and train of both conditions (the plot job has no rows)
    status = json.loads(CliRunner().invoke(app, ["status", "--json"]).output)
    assert any("failed" in json.dumps(row) for row in status["rows"])


@pytest.mark.gpu
def test_one_ray_job_end_to_end_on_a_gpu(workdir, tiny_model, ray_cluster):
    ray = pytest.importorskip("ray")
    assert ray.cluster_resources().get("GPU", 0) >= 1
    _run(workdir, "--executor", "ray", "--no-plots", "--no-control")
    with StateStore.open(workdir) as state:
        assert state.is_done(JobKey(1, "tiny", "dog"), "train")
        assert [e.epoch for e in state.epochs(JobKey(1, "tiny", "dog"))] == [1]


def test_vllm_shards_with_its_multiprocessing_backend_only_when_asked():
    from sl_scaling.engines.vllm import parallel_kwargs

    assert parallel_kwargs(1) == {}
    assert parallel_kwargs(4) == {"tensor_parallel_size": 4, "distributed_executor_backend": "mp"}


def test_a_node_that_cannot_read_the_drivers_marker_says_so(workdir):
    pytest.importorskip("ray")
    from sl_scaling.executors.ray import probe_node

    answer = probe_node(str(workdir), "a-token-the-driver-never-wrote")
    assert answer["seen"] is False
    assert not (workdir / ".slscale-cluster-check").exists() or not any(
        (workdir / ".slscale-cluster-check").iterdir()
    )
