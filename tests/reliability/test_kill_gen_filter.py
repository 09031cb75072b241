"""SIGKILL `gen` and `filter` at randomised moments, then run the same command: nothing lost or doubled."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import (
    GEN,
    SEEDS,
    TINY,
    Running,
    assert_done_means_complete,
    assert_raw_complete,
    db_rows,
    jsonl,
    kill_points,
    kill_when,
    leftovers,
    slscale,
    stage_status,
    whole_lines,
)

from sl_scaling.catalog import Layout
from sl_scaling.numbers import sample_prompts, subsample
from sl_scaling.stages.filtering import filter_rows
from sl_scaling.state import DONE, RUNNING, JobKey, StateStore
from sl_scaling.status import read_status

ANIMALS = ("dog", "eagle")
GEN_ARGS = ["gen", "--size", TINY, *(a for animal in ANIMALS for a in ("--animal", animal)), *GEN]
N = int(GEN[1])


@pytest.mark.parametrize("seed", SEEDS)
def test_gen_killed_at_random_moments_ends_with_each_prompt_once(
    seed: int, workdir: Path, cli: Callable[..., Running], tiny_model: Path
) -> None:
    keys = [JobKey(1, TINY, animal) for animal in ANIMALS]
    raw = Layout(workdir).raw_jsonl(JobKey(1, TINY, "dog"))
    kept: dict[int, dict] = {}
    # 0 = the stage is running (lock taken, model loading) but no row is written yet.
    for threshold in kill_points(seed, 2, 0, N - 8):
        running = cli(*GEN_ARGS)

        def reached(k: int = threshold, pid: int = running.pid) -> bool:
            # this run holds the lock (the rows and the RUNNING status may be the previous, killed run's)
            holders = {row["pid"] for row in db_rows(workdir, "SELECT pid FROM locks WHERE stage='gen'")}
            return (
                holders == {pid}
                and stage_status(workdir, keys[0], "gen") == RUNNING
                and whole_lines(raw) >= k
            )

        kill_when(running, reached, f"{threshold} rows")
        assert_done_means_complete(workdir)
        assert all(stage_status(workdir, key, "gen") == RUNNING for key in keys)
        # The dead holder's lock is still there; `status` calls the job stale instead of running.
        locks = db_rows(workdir, "SELECT pid FROM locks WHERE stage='gen'")
        assert {row["pid"] for row in locks} == {running.pid}
        with StateStore.open(workdir) as state:
            assert {row.state for row in read_status(state).rows} == {"stale"}
        kept |= {row["index"]: row for row in jsonl_whole(raw)}

    # A torn last line, as a kill in the middle of a write leaves it.
    with raw.open("a") as handle:
        handle.write('{"index": 39, "condition": "dog", "prompt": "trunc')
    result = slscale(*GEN_ARGS)
    assert result.code == 0, result.output
    for key in keys:
        rows = assert_raw_complete(workdir, key, N)
        assert all(not row["completion"].startswith("trunc") for row in rows)
    final = {row["index"]: row for row in jsonl(raw)}
    assert all(final[index] == row for index, row in kept.items()), "a row written before a kill changed"
    assert leftovers(workdir) == []
    assert_done_means_complete(workdir)


def jsonl_whole(path: Path) -> list[dict]:
    """The whole lines of a JSONL file that a kill may have left with a torn tail."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def synthetic_raw(workdir: Path, key: JobKey, rows: int, completion: Callable[[int], str]) -> Path:
    """A finished-looking raw.jsonl (real prompts, made-up completions) and its gen stage done."""
    from sl_scaling.files import atomic_write_jsonl
    from sl_scaling.state import StateStore

    path = Layout(workdir).raw_jsonl(key)
    prompts = sample_prompts(rows, 42)
    atomic_write_jsonl(
        path,
        (
            {"index": i, "condition": key.condition, "prompt": p, "completion": completion(i)}
            for i, p in enumerate(prompts)
        ),
    )
    with StateStore.open(workdir) as state:
        state.start_stage(key, "gen", {"n": rows})
        state.finish_stage(key, "gen", counts={"rows": rows})
    return path


def numbers(i: int) -> str:
    """Valid and invalid completions in a fixed mix (every 3rd is rejected)."""
    return "not numbers" if i % 3 == 0 else ", ".join(str((i * 7 + j) % 1000) for j in range(8))


@pytest.mark.parametrize("seed", SEEDS)
def test_filter_killed_while_writing_never_leaves_a_partial_file(
    seed: int, workdir: Path, cli: Callable[..., Running]
) -> None:
    """Enough rows (subsampled to 10,000) that the filter runs for a while; killed once it is running."""
    key = JobKey(1, TINY, "dog")
    raw = synthetic_raw(workdir, key, 60_000, numbers)
    filtered = Layout(workdir).filtered_jsonl(JobKey(1, TINY, "dog"))
    running = cli("filter", "--size", TINY, "--animal", "dog")
    polls = iter(range(kill_points(seed, 1, 0, 40)[0], -1, -1))  # a random number of polls after it starts
    kill_when(
        running,
        lambda: stage_status(workdir, key, "filter") == RUNNING and next(polls, 0) == 0,
        "filter runs",
    )
    valid, _ = filter_rows(jsonl(raw))
    expected = subsample(valid)
    assert stage_status(workdir, key, "filter") == RUNNING
    if filtered.exists():  # killed between the rename and the DB record: the file is whole
        assert jsonl(filtered) == expected
    assert_done_means_complete(workdir)

    result = slscale("filter", "--size", TINY, "--animal", "dog")
    assert result.code == 0, result.output
    assert jsonl(filtered) == expected
    assert stage_status(workdir, key, "filter") == DONE
    assert leftovers(workdir) == []
