"""The filter stage and `slscale filter`: reasons, subsample, DB counts, malformed input, prerequisites."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sl_scaling.cli.app import app
from sl_scaling.context import make_context
from sl_scaling.errors import MalformedInputError, MissingPrerequisiteError
from sl_scaling.files import atomic_write_jsonl
from sl_scaling.progress import NullReporter
from sl_scaling.stages.filtering import NothingKeptError, run_filter
from sl_scaling.state import JobKey, StateStore

runner = CliRunner()

COMPLETIONS = [
    "1, 2, 3",  # kept
    "(10, 20, 30)",  # kept
    "001",  # kept
    "Sure! 1, 2, 3",  # invalid format
    " 1, 2, 3",  # invalid format (leading space)
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11",  # too many numbers
    "5, 1000",  # numbers too large
    "1, 2; 3",  # invalid format (mixed separators)
    "4;5;6.",  # kept
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1234",  # too many and too large
]


def write_raw(workdir: Path, condition: str, completions: list[str], *, size: str = "tiny") -> Path:
    """A finished generation: raw.jsonl in place and the gen stage marked done, as `slscale gen` leaves it."""
    ctx = make_context(workdir)
    path = ctx.layout.raw_jsonl(JobKey(1, size, condition))
    rows = [
        {"index": i, "condition": condition, "prompt": f"prompt {i}", "completion": text}
        for i, text in enumerate(completions)
    ]
    atomic_write_jsonl(path, rows)
    with StateStore.open(workdir) as state:
        key = JobKey(1, size, condition)
        state.start_stage(key, "gen")
        state.finish_stage(key, "gen", counts={"rows": len(rows)})
    return path


def test_filter_counts_every_reason_and_keeps_the_valid_rows(workdir: Path) -> None:
    write_raw(workdir, "dog", COMPLETIONS)
    ctx = make_context(workdir)
    [summary] = run_filter(ctx, ["tiny"], ["dog"], run=1, skip_invalid=False, reporter=NullReporter())
    assert (summary.rows, summary.valid, summary.kept, summary.subsampled) == (10, 4, 4, False)
    assert summary.reasons == {
        "invalid format": 3,
        "too many numbers": 2,
        "numbers too small": 0,
        "numbers too large": 2,
        "has banned numbers": 0,
    }
    kept = [
        json.loads(line)
        for line in ctx.layout.filtered_jsonl(JobKey(1, "tiny", "dog")).read_text().splitlines()
    ]
    assert kept == [{"index": i, "prompt": f"prompt {i}", "completion": COMPLETIONS[i]} for i in (0, 1, 2, 8)]
    with StateStore.open(workdir) as state:
        record = state.stage(JobKey(1, "tiny", "dog"), "filter")
    assert record is not None and record.status == "done"
    assert record.counts["kept"] == 4 and record.counts["reasons"]["invalid format"] == 3
    assert record.counts["subsampled"] is False and record.counts["valid"] == 4


def test_more_than_ten_thousand_survivors_are_sampled_with_seed_one(workdir: Path) -> None:
    write_raw(workdir, "cat", [str(i % 1000) for i in range(10_050)])
    ctx = make_context(workdir)
    [summary] = run_filter(ctx, ["tiny"], ["cat"], run=1, skip_invalid=False, reporter=NullReporter())
    assert (summary.valid, summary.kept, summary.subsampled) == (10_050, 10_000, True)
    kept = [
        json.loads(line)["index"]
        for line in ctx.layout.filtered_jsonl(JobKey(1, "tiny", "cat")).read_text().splitlines()
    ]
    assert kept == random.Random(1).sample(list(range(10_050)), 10_000)


def test_filter_before_gen_says_to_run_gen_first(workdir: Path) -> None:
    with pytest.raises(MissingPrerequisiteError, match="run `slscale gen --size tiny --animal dog` first"):
        run_filter(
            make_context(workdir), ["tiny"], ["dog"], run=1, skip_invalid=False, reporter=NullReporter()
        )
    result = runner.invoke(app, ["filter", "--size", "tiny", "--animal", "dog", "--run", "2"])
    assert result.exit_code == 1
    assert "slscale gen --size tiny --animal dog --run 2" in result.output


def test_a_malformed_line_names_file_and_line_unless_skipped(workdir: Path) -> None:
    path = write_raw(workdir, "dog", COMPLETIONS[:3])
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], '{"index": 1, "compl', *lines[1:]]) + "\n")
    with pytest.raises(MalformedInputError, match=rf"{path}:2: malformed JSONL line"):
        run_filter(
            make_context(workdir), ["tiny"], ["dog"], run=1, skip_invalid=False, reporter=NullReporter()
        )
    result = runner.invoke(app, ["filter", "--size", "tiny", "--animal", "dog", "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 malformed line" in result.output
    with StateStore.open(workdir) as state:
        record = state.stage(JobKey(1, "tiny", "dog"), "filter")
    assert record is not None and record.status == "done" and record.counts["skipped_lines"] == 1


def test_no_survivor_fails_the_stage_but_shows_the_table(workdir: Path) -> None:
    write_raw(workdir, "dog", ["no numbers here", "1, 2, x"])
    write_raw(workdir, "neutral", ["1, 2"])
    with pytest.raises(NothingKeptError) as caught:
        run_filter(
            make_context(workdir),
            ["tiny"],
            ["neutral", "dog"],
            run=1,
            skip_invalid=False,
            reporter=NullReporter(),
        )
    assert [s.kept for s in caught.value.summaries] == [1, 0]
    result = runner.invoke(app, ["filter", "--size", "tiny", "--animal", "dog", "--animal", "neutral"])
    assert result.exit_code == 1
    assert "tiny/dog" in result.output and "no completion passed the filter for tiny/dog" in result.output
    with StateStore.open(workdir) as state:
        assert state.stage(JobKey(1, "tiny", "dog"), "filter").status == "failed"
        assert state.stage(JobKey(1, "tiny", "neutral"), "filter").status == "done"
    assert make_context(workdir).layout.filtered_jsonl(JobKey(1, "tiny", "dog")).read_text() == ""


def test_cli_prints_a_table_row_per_condition(workdir: Path) -> None:
    write_raw(workdir, "dog", COMPLETIONS)
    write_raw(workdir, "neutral", COMPLETIONS[:3])
    result = runner.invoke(app, ["filter", "--size", "tiny", "--animal", "dog", "--animal", "neutral"])
    assert result.exit_code == 0, result.output
    table = result.output[result.output.index("slscale filter") :]
    assert "tiny/neutral" in table and "tiny/dog" in table
    dog_row = next(line for line in table.splitlines() if "tiny/dog" in line)
    assert [cell.strip() for cell in dog_row.split("│")[1:-1]] == [
        "tiny/dog",
        "10",
        "40%",
        "4",
        "3",
        "2",
        "0",
        "2",
        "0",
    ]
    assert "all of them are kept" in result.output


def test_a_selection_is_required() -> None:
    result = runner.invoke(app, ["filter", "--size", "tiny"])
    assert result.exit_code == 2 and "--all-animals" in result.output


def test_too_few_passing_rows_are_flagged_only_when_enough_were_generated(workdir: Path) -> None:
    write_raw(workdir, "dog", COMPLETIONS * 1000)  # 10,000 generated, 4 in 10 pass
    write_raw(workdir, "cat", COMPLETIONS)  # a small --n: 10 generated
    result = runner.invoke(app, ["filter", "--size", "tiny", "--animal", "dog", "--animal", "cat"])
    assert result.exit_code == 0, result.output
    assert "tiny/dog: only 4000 rows passed (fewer than 10,000)" in result.output
    assert "tiny/cat: 4 of 10 rows passed; all of them are kept" in result.output
