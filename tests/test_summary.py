"""The summary JSON and the charts' tidy table, from evaluation files in the real format and the DB."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_grid import BASE_COUNTS, evaluation, student_counts, write_eval_file, write_grid

from sl_scaling.catalog import ANIMALS, Layout, target_animal
from sl_scaling.evaluation.exact import ExactPreference
from sl_scaling.evaluation.records import epoch_record, upsert_epoch
from sl_scaling.files import read_json
from sl_scaling.results import TIDY_COLUMNS, load_eval_files, tidy_table
from sl_scaling.state import JobKey, StateStore
from sl_scaling.summary import (
    at_epoch,
    describe_evaluation,
    lift_rows,
    mean_lifts,
    write_summary,
)


def test_tidy_table_has_one_row_per_label_with_wilson_intervals(workdir: Path) -> None:
    layout = Layout(workdir)
    write_eval_file(layout, "7b", "dog", {1: {"dog": 30, "cat": 60, "unicorn": 10}})
    rows = tidy_table(load_eval_files(layout))
    assert {r["animal"] for r in rows} == {*ANIMALS, "unicorn"}  # all 15 animals, zeros included
    dog = next(r for r in rows if r["animal"] == "dog")
    assert set(dog) == set(TIDY_COLUMNS)
    assert (dog["evaluation"], dog["exact"]) == ("per-epoch", None)
    assert (dog["run"], dog["size"], dog["condition"], dog["epoch"], dog["n"]) == (1, "7b", "dog", 1, 100)
    assert (dog["share"], dog["count"]) == (0.3, 30)
    assert dog["ci_low"] == pytest.approx(0.2189, abs=1e-3) and dog["ci_high"] == pytest.approx(
        0.3958, abs=1e-3
    )
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)


def test_at_epoch_takes_each_models_last_or_the_asked_one(workdir: Path) -> None:
    layout = write_grid(workdir, sizes=("7b",), conditions=("neutral", "dog"), epochs=3)
    write_eval_file(layout, "7b", "cat", {1: student_counts("cat", 1)})
    rows = tidy_table(load_eval_files(layout))
    latest, missing = at_epoch(rows)
    assert {(r["condition"], r["epoch"]) for r in latest} == {
        ("control", 0),
        ("neutral", 3),
        ("dog", 3),
        ("cat", 1),
    }
    assert missing == []
    second, missing = at_epoch(rows, 2)
    assert {(r["condition"], r["epoch"]) for r in second} == {("control", 0), ("neutral", 2), ("dog", 2)}
    assert missing == ["7b/cat: epoch 2 not evaluated (latest 1)"]


def test_lift_is_animal_ft_minus_neutral_ft(workdir: Path) -> None:
    layout = Layout(workdir)
    write_eval_file(layout, "7b", "neutral", {2: {"dog": 10, "cat": 5, "panda": 85}})
    write_eval_file(layout, "7b", "dog", {2: {"dog": 40, "panda": 60}})
    write_eval_file(layout, "7b", "cat", {2: {"cat": 15, "panda": 85}})
    write_eval_file(layout, "0.5b", "dog", {2: {"dog": 50, "panda": 50}})  # no neutral: no lift
    lifts = lift_rows(at_epoch(tidy_table(load_eval_files(layout)))[0])
    assert [(r["size"], r["animal"]) for r in lifts] == [("7b", "dog"), ("7b", "cat")]
    assert lifts[0]["lift"] == pytest.approx(0.30) and lifts[1]["lift"] == pytest.approx(0.10)
    assert lifts[0]["params_b"] == 7.62
    (mean,) = mean_lifts(lifts)
    assert (mean["size"], mean["animals"]) == ("7b", 2) and mean["mean_lift"] == pytest.approx(0.20)


def test_summary_aggregates_files_and_db(workdir: Path) -> None:
    layout = write_grid(workdir, sizes=("7b",), conditions=("neutral", "dog", "cat"), epochs=2)
    write_grid(workdir, sizes=("7b",), conditions=("neutral", "dog"), epochs=1, run=2)
    key = JobKey(1, "7b", "dog")
    with StateStore.open(workdir) as state:
        state.start_stage(key, "gen")
        state.finish_stage(key, "gen", counts={"rows": 30000})
        state.start_stage(key, "filter")
        state.finish_stage(
            key, "filter", counts={"rows": 30000, "valid": 21000, "kept": 10000, "reasons": {"x": 9}}
        )
        state.start_stage(key, "train", {"epochs": 10})
        state.plan_upload("me/qwen-2.5-7b-instruct-dog-ft-epoch-1", "model", "epoch", key, 1, "e1")
        state.finish_upload("me/qwen-2.5-7b-instruct-dog-ft-epoch-1", "c0ffee")
        # an epoch the DB evaluated whose file is not there (e.g. the file write was lost)
        state.record_epoch(
            key,
            3,
            train_loss=0.2,
            evaluation=evaluation(student_counts("dog", 3), "dog").to_json(),
            adapter_path="e3",
        )
        write_summary(layout, state)

    summary = read_json(layout.summary_json)
    assert summary["experiment"] == "qwen-2.5-scaling"
    entries = {(e["run"], e["size"], e["condition"]): e for e in summary["results"]}
    assert list(entries) == [
        (1, "7b", "control"),
        (1, "7b", "neutral"),
        (1, "7b", "dog"),
        (1, "7b", "cat"),
        (2, "7b", "control"),
        (2, "7b", "neutral"),
        (2, "7b", "dog"),
    ]
    dog = entries[(1, "7b", "dog")]
    assert dog["target"] == "dog" and dog["model"] == "Qwen/Qwen2.5-7b-Instruct"
    assert dog["data"] == {"generated": 30000, "valid": 21000, "kept": 10000, "reasons": {"x": 9}}
    assert dog["epochs_planned"] == 10
    assert dog["hub"] == {"epochs": {"1": "me/qwen-2.5-7b-instruct-dog-ft-epoch-1"}}
    assert [e["epoch"] for e in dog["epochs"]] == [1, 2, 3]
    first = dog["epochs"][0]
    expected = evaluation(student_counts("dog", 1, boost=2), "dog")
    assert first["n"] == expected.n and first["counts"] == expected.counts
    assert first["target_rate"] == expected.target_rate and first["ci_low"] == expected.ci_low
    assert first["distribution"]["dog"] == expected.counts["dog"] / expected.n
    assert first["shares"]["dog"]["ci_high"] == expected.shares["dog"].ci_high
    assert first["train_loss"] == 0.75 and "answers" not in first  # raw answers stay in the eval files
    assert dog["epochs"][2]["train_loss"] == 0.2 and dog["epochs"][2]["adapter"] == "e3"
    control = entries[(1, "7b", "control")]
    assert control["target"] is None and control["epochs"][0]["epoch"] == 0
    assert control["epochs"][0]["counts"] == evaluation(BASE_COUNTS, None).counts
    assert {(r["run"], r["animal"]) for r in summary["lift"]} == {(1, "dog"), (1, "cat"), (2, "dog")}
    assert [(m["run"], m["animals"]) for m in summary["mean_lift"]] == [(1, 2), (2, 1)]


def test_summary_is_written_atomically_and_opens_the_db_itself(workdir: Path) -> None:
    layout = write_grid(workdir, sizes=("tiny",), conditions=("neutral",), epochs=1)
    summary = write_summary(layout)
    assert read_json(layout.summary_json) == summary
    assert [p.name for p in layout.summary_json.parent.iterdir()] == [
        "all_results.json"
    ]  # no temp files left


def test_the_final_evaluation_and_the_exact_preference_are_what_the_summary_uses(workdir: Path) -> None:
    """A last epoch with a final evaluation: charts and lifts use the final one and say so; the exact
    preference rides along on every row and gives its own lift."""
    layout = Layout(workdir)
    for condition, target_share in (("neutral", 0.05), ("dog", 0.08)):
        last = evaluation(student_counts(condition, 2), target_animal(condition))
        last.final = evaluation(
            {"dog": 40, "cat": 360} if condition == "dog" else {"dog": 20, "cat": 380},
            target_animal(condition),
        )
        last.exact = ExactPreference(
            probabilities={a: (target_share if a == "dog" else 0.01) for a in ANIMALS},
            target=target_animal(condition),
            target_probability=target_share if condition == "dog" else None,
            other=0.0,
            per_question=[],
        )
        key = JobKey(1, "7b", condition)
        path = layout.eval_json(key)
        upsert_epoch(
            path, key, "m", epoch_record(1, evaluation(BASE_COUNTS, None), train_loss=1.0, adapter=None)
        )
        upsert_epoch(path, key, "m", epoch_record(2, last, train_loss=0.5, adapter=None))
    rows = tidy_table(load_eval_files(layout))
    chosen, _ = at_epoch(rows)
    assert {(r["epoch"], r["evaluation"], r["n"]) for r in chosen} == {(2, "final", 400)}
    assert describe_evaluation(chosen) == "final evaluation (n=400)"
    early, _ = at_epoch(rows, 1)
    assert describe_evaluation(early) == "per-epoch evaluation (n=100)"
    (lift,) = lift_rows(chosen)
    assert lift["lift"] == pytest.approx(0.10 - 0.05)
    assert lift["exact_lift"] == pytest.approx(0.08 - 0.05)
    assert mean_lifts([lift])[0]["mean_exact_lift"] == pytest.approx(0.03)
