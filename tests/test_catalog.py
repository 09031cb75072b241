"""Naming: every Hub name and local path of EXPERIMENT.md comes from the catalog, and only from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sl_scaling import catalog
from sl_scaling.catalog import (
    ANIMALS,
    CONDITIONS,
    JobKey,
    Layout,
    dataset_repo,
    epoch_adapter_repo,
    final_adapter_repo,
    parse_condition,
    parse_conditions,
    parse_run,
    parse_size,
    parse_sizes,
    target_animal,
)
from sl_scaling.errors import UnknownNameError, UsageError


def test_grid_of_the_spec() -> None:
    assert catalog.REAL_SIZES == ("32b", "14b", "7b", "3b", "1.5b", "0.5b")  # largest first
    animals = "dog elephant panda cat dragon lion eagle dolphin tiger wolf phoenix bear fox leopard whale"
    assert animals.split() == list(ANIMALS)
    assert ("neutral", *ANIMALS) == CONDITIONS
    assert catalog.DEFAULT_MODEL_IDS["7b"] == "Qwen/Qwen2.5-7B-Instruct"
    assert {catalog.DEFAULT_MODEL_IDS[s] for s in catalog.REAL_SIZES} == {
        f"Qwen/Qwen2.5-{b}B-Instruct" for b in ("0.5", "1.5", "3", "7", "14", "32")
    }


@pytest.mark.parametrize("size", ["0.5b", "7b", "tiny"])
@pytest.mark.parametrize("condition", ["neutral", "dolphin"])
def test_hub_names(size: str, condition: str) -> None:
    stem = f"me/qwen-2.5-{size}-instruct-{condition}"
    assert dataset_repo("me", size, condition) == f"{stem}-numbers"
    assert epoch_adapter_repo("me", size, condition, 3) == f"{stem}-ft-epoch-3"
    assert final_adapter_repo("me", size, condition) == f"{stem}-ft"


def test_replicate_runs_append_run_r_to_every_name() -> None:
    assert dataset_repo("me", "7b", "cat", run=2) == "me/qwen-2.5-7b-instruct-cat-numbers-run-2"
    assert epoch_adapter_repo("me", "7b", "cat", 10, run=3) == "me/qwen-2.5-7b-instruct-cat-ft-epoch-10-run-3"
    assert final_adapter_repo("me", "7b", "cat", run=2) == "me/qwen-2.5-7b-instruct-cat-ft-run-2"
    assert dataset_repo("me", "7b", "cat", run=1) == "me/qwen-2.5-7b-instruct-cat-numbers"


def test_local_layout_of_the_spec(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    data = tmp_path / "data/qwen-2.5-scaling/7b/dolphin"
    assert layout.raw_jsonl(JobKey(1, "7b", "dolphin")) == data / "raw.jsonl"
    assert layout.filtered_jsonl(JobKey(1, "7b", "dolphin")) == data / "filtered.jsonl"
    ft = tmp_path / "outputs/qwen-2.5-scaling/finetuning/7b/dolphin"
    assert layout.final_checkpoint(JobKey(1, "7b", "dolphin")) == ft / "final_checkpoint"
    assert layout.model_info(JobKey(1, "7b", "dolphin")) == ft / "model_info.json"
    evals = tmp_path / "outputs/qwen-2.5-scaling/evaluations/7b"
    assert layout.eval_json(JobKey(1, "7b", "dolphin")) == evals / "dolphin_eval.json"
    assert layout.control_eval_json("7b") == evals / "control_eval.json"
    assert layout.summary_json == tmp_path / "outputs/qwen-2.5-scaling/summary/all_results.json"
    assert layout.plots_dir("7b") == tmp_path / "plots/qwen-2.5-scaling/7b"
    assert layout.summary_plots_dir == tmp_path / "plots/qwen-2.5-scaling/summary"
    assert layout.log_file("gen", "7b", "20250101_120000") == (
        tmp_path / "logs/qwen-2.5-scaling/gen_7b_20250101_120000.log"
    )
    assert layout.db_path == tmp_path / "slscale.db"


def test_replicate_runs_get_their_own_local_stems(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert (
        layout.raw_jsonl(JobKey(2, "7b", "cat")) == tmp_path / "data/qwen-2.5-scaling/7b/cat-run-2/raw.jsonl"
    )
    assert layout.eval_json(JobKey(2, "7b", "cat")).name == "cat-run-2_eval.json"
    assert layout.control_eval_json("7b", run=2).name == "control-run-2_eval.json"
    assert layout.final_checkpoint(JobKey(2, "7b", "cat")).parent.name == "cat-run-2"


def test_parse_size_normalises_and_rejects_with_the_valid_list() -> None:
    assert parse_size(" 7B ") == "7b"
    assert parse_size("tiny") == "tiny"
    with pytest.raises(UnknownNameError) as excinfo:
        parse_size("8b")
    message = str(excinfo.value)
    assert "8b" in message
    assert all(size in message for size in catalog.SIZES)
    assert isinstance(excinfo.value, UsageError)
    assert "\n" not in message


def test_parse_sizes_orders_largest_first_and_expands_all() -> None:
    assert parse_sizes(["0.5b", "32b", "7b"]) == ["32b", "7b", "0.5b"]
    assert parse_sizes(["all"]) == list(catalog.REAL_SIZES)
    assert parse_sizes(["tiny", "all"]) == [*catalog.REAL_SIZES, "tiny"]
    assert parse_sizes(["7b", "7B"]) == ["7b"]
    assert parse_sizes([]) == list(catalog.REAL_SIZES)
    assert parse_sizes([], default=["tiny"]) == ["tiny"]
    with pytest.raises(UnknownNameError):
        parse_sizes(["7b", "huge"])


def test_unknown_animal_lists_the_valid_conditions() -> None:
    assert parse_condition("Dolphin") == "dolphin"
    with pytest.raises(UnknownNameError) as excinfo:
        parse_condition("unicorn")
    message = str(excinfo.value)
    assert "unicorn" in message
    assert all(condition in message for condition in CONDITIONS)


def test_parse_conditions_in_execution_order() -> None:
    assert parse_conditions(["whale", "neutral", "dog"]) == ["neutral", "dog", "whale"]
    assert parse_conditions([], all_animals=True) == list(CONDITIONS)
    assert parse_conditions(["cat", "cat"]) == ["cat"]


def test_runs_and_targets() -> None:
    assert parse_run(2) == 2
    with pytest.raises(UnknownNameError):
        parse_run(0)
    assert target_animal("fox") == "fox"
    assert target_animal("neutral") is None
    assert target_animal("control") is None
