"""`slscale eval` on the tiny model: the control baseline and re-evaluation of saved adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train_cli import FAST, invoke, numbers, with_numbers  # noqa: F401 - fixtures

from sl_scaling.catalog import Layout
from sl_scaling.seeds import eval_seed
from sl_scaling.state import DONE, JobKey, StateStore


def test_control_writes_control_eval_json(workdir: Path) -> None:
    result = invoke("eval", "--size", "tiny", "--control", "--samples", "30", "--final-samples", "60")
    assert result.exit_code == 0, result.output
    data = json.loads(Layout(workdir).control_eval_json("tiny").read_text())
    assert (data["size"], data["condition"], data["target"]) == ("tiny", "control", None)
    (record,) = data["epochs"]
    assert record["epoch"] == 0 and record["n"] == 30 and record["target_rate"] is None
    assert record["seed"] == eval_seed(1, "tiny", 0)
    assert record["final"]["n"] == 60 and record["final"]["seed"] == eval_seed(1, "tiny", 0, final=True)
    assert (
        record["exact"]["target_probability"] is None and sum(record["exact"]["probabilities"].values()) > 0
    )
    assert record["train_loss"] is None and record["adapter"] is None
    assert sum(record["counts"].values()) == 30
    assert [a["question_index"] for a in record["answers"]] == [i % 50 for i in range(30)]
    with StateStore.open(workdir) as state:
        assert state.stage(JobKey(1, "tiny", "control"), "eval").status == DONE

    again = invoke("eval", "--size", "tiny", "--control", "--samples", "10", "--final-samples", "0")
    assert again.exit_code == 0
    (record,) = json.loads(Layout(workdir).control_eval_json("tiny").read_text())["epochs"]
    assert record["n"] == 10 and record["final"] is None  # re-evaluation replaces, never duplicates


def test_adapters_are_re_evaluated_deeper_keeping_the_training_loss(with_numbers: Layout) -> None:  # noqa: F811
    layout = with_numbers
    assert invoke("train", "--size", "tiny", "--animal", "dolphin", "--epochs", "1", *FAST).exit_code == 0
    before = json.loads(layout.eval_json(JobKey(1, "tiny", "dolphin")).read_text())["epochs"]

    result = invoke("eval", "--size", "tiny", "--animal", "dolphin", "--epoch", "1", "--samples", "40")
    assert result.exit_code == 0, result.output
    (after,) = json.loads(layout.eval_json(JobKey(1, "tiny", "dolphin")).read_text())["epochs"]
    assert after["n"] == 40 and len(after["answers"]) == 40 and before[0]["n"] == 20
    assert after["train_loss"] == before[0]["train_loss"]
    assert after["adapter"] == str(layout.final_checkpoint(JobKey(1, "tiny", "dolphin")))
    with StateStore.open(layout.workdir) as state:
        (epoch,) = state.epochs(JobKey(1, "tiny", "dolphin"))
        assert epoch.n == 40 and epoch.train_loss == before[0]["train_loss"]
        assert epoch.target_rate == after["target_rate"]
        assert state.stage(JobKey(1, "tiny", "dolphin"), "eval").status == DONE

    missing = invoke("eval", "--size", "tiny", "--animal", "dolphin", "--epoch", "7")
    assert missing.exit_code == 1 and "recorded: 1" in missing.output


def test_eval_of_an_epoch_repeats_exactly_what_training_recorded(with_numbers: Layout) -> None:  # noqa: F811
    layout = with_numbers
    assert invoke("train", "--size", "tiny", "--animal", "dolphin", "--epochs", "2", *FAST).exit_code == 0
    before = json.loads(layout.eval_json(JobKey(1, "tiny", "dolphin")).read_text())["epochs"]

    result = invoke("eval", "--size", "tiny", "--animal", "dolphin", "--epoch", "2")
    assert result.exit_code == 0, result.output
    assert "engine hf: the engine that recorded these evaluations" in result.output
    after = json.loads(layout.eval_json(JobKey(1, "tiny", "dolphin")).read_text())["epochs"]
    assert after[0] == before[0]  # epoch 1 was not asked for
    trained, repeated = before[1], after[1]
    assert (repeated["n"], repeated["final"]["n"], repeated["seed"]) == (20, 40, trained["seed"])
    assert repeated["answers"] == trained["answers"]
    assert repeated["final"]["answers"] == trained["final"]["answers"]
    for mine, theirs in zip(repeated["exact"]["per_question"], trained["exact"]["per_question"], strict=True):
        assert mine == pytest.approx(theirs, rel=1e-5)


def test_untrained_condition_says_to_train_first() -> None:
    result = invoke("eval", "--size", "tiny", "--animal", "fox")
    assert result.exit_code == 1 and "slscale train" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--control", "--animal", "dog"],
        [],
        ["--control", "--epoch", "1"],
        ["--control", "--samples", "0"],
        ["--control", "--final-samples", "-1"],
        ["--control", "--engine", "tensorrt"],
    ],
    ids=["both", "neither", "epoch-with-control", "samples", "final-samples", "engine"],
)
def test_conflicting_or_bad_flags_are_usage_errors(args: list[str]) -> None:
    result = invoke("eval", "--size", "tiny", *args)
    assert result.exit_code == 2, result.output
