"""`slscale train` end to end on the tiny model: real gen → filter → TRL/PEFT training → per-epoch eval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_tracking import offline_run
from transformers import AutoTokenizer
from typer.testing import CliRunner

from sl_scaling.catalog import ANIMALS, Layout
from sl_scaling.cli.app import app
from sl_scaling.grid import TINY_DEFAULTS
from sl_scaling.seeds import eval_seed
from sl_scaling.state import DONE, JobKey, StateStore
from sl_scaling.training.data import build_dataset, load_rows

KEY = JobKey(1, "tiny", "dolphin")
FAST = ["--no-push", "--batch-size", "8", "--grad-accum", "1", "--samples", "20", "--final-samples", "40"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def numbers(tmp_path_factory: pytest.TempPathFactory, tiny_cache: Path) -> Path:
    """Teacher numbers for dolphin, made once per module by the real `gen` and `filter` (small n)."""
    root = tmp_path_factory.mktemp("numbers")
    env = {"SLSCALE_TINY_CACHE": str(tiny_cache), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    for command in (["gen", "--n", "120"], ["filter"]):
        result = CliRunner().invoke(
            app, [*command, "--size", "tiny", "--animal", "dolphin", "--workdir", str(root)], env=env
        )
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def with_numbers(numbers: Path, workdir: Path) -> Layout:
    shutil.copytree(numbers / "data", workdir / "data")
    return Layout(workdir)


def test_train_records_every_epoch_in_files_db_and_wandb(
    with_numbers: Layout, monkeypatch: pytest.MonkeyPatch, tiny_model: Path
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_TOKEN", "hf_SENTINEL_never_logged")  # present, but must never reach W&B or a file
    layout = with_numbers
    result = invoke(
        "train", "--size", "tiny", "--animal", "dolphin", *FAST
    )  # tiny's defaults: 2 epochs, lr 2e-2
    assert result.exit_code == 0, result.output
    assert "trainer trl" in result.output

    evaluations = json.loads(layout.eval_json(JobKey(1, "tiny", "dolphin")).read_text())
    assert (evaluations["size"], evaluations["condition"], evaluations["target"]) == (
        "tiny",
        "dolphin",
        "dolphin",
    )
    assert [e["epoch"] for e in evaluations["epochs"]] == [1, 2]
    for record in evaluations["epochs"]:
        assert record["n"] == 20 and len(record["answers"]) == 20
        assert abs(sum(record["distribution"].values()) - 1) < 1e-9
        assert 0 <= record["ci_low"] <= record["target_rate"] <= record["ci_high"] <= 1
        assert record["train_loss"] > 0
        assert (record["engine"], record["seed"]) == ("hf", eval_seed(1, "tiny", record["epoch"]))
        exact = record["exact"]  # the sampling-free preference beside every sampled evaluation
        assert set(exact["probabilities"]) == set(ANIMALS) and len(exact["per_question"]) == 50
        assert exact["target_probability"] == exact["probabilities"]["dolphin"] > 0
    first, last = evaluations["epochs"]
    assert "final" not in first or first["final"] is None  # only the last epoch gets the final evaluation
    assert last["final"]["n"] == 40 and len(last["final"]["answers"]) == 40
    assert last["final"]["seed"] == eval_seed(1, "tiny", 2, final=True)

    final = layout.final_checkpoint(JobKey(1, "tiny", "dolphin"))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in final.iterdir()}
    assert json.loads((final / "adapter_config.json").read_text())["r"] == 8
    assert (layout.epoch_adapter_dir(JobKey(1, "tiny", "dolphin"), 1) / "adapter_model.safetensors").exists()
    finetune = layout.finetune_dir(JobKey(1, "tiny", "dolphin"))
    assert not (finetune / "checkpoints").exists()  # trainer state is dropped once the condition is done
    saved = json.loads((finetune / "train_config.json").read_text())
    assert (saved["epochs"], saved["lr"], saved["batch_size"], saved["lora_alpha"], saved["trainer"]) == (
        2,
        TINY_DEFAULTS.lr,
        8,
        8,
        "trl",
    )
    info = json.loads(layout.model_info(JobKey(1, "tiny", "dolphin")).read_text())
    assert set(info["epochs"]) == {"1", "2"} and info["epochs"]["2"]["adapter_path"] == str(final)

    with StateStore.open(layout.workdir) as state:
        epochs = state.epochs(KEY)
        stage = state.stage(KEY, "train")
    assert [e.epoch for e in epochs] == [1, 2]
    assert epochs[1].adapter_path == str(final) and not epochs[1].local_deleted
    assert [e.train_loss for e in epochs] == [r["train_loss"] for r in evaluations["epochs"]]
    assert [e.target_rate for e in epochs] == [r["target_rate"] for r in evaluations["epochs"]]
    assert stage.status == DONE and stage.counts["epochs"] == 2
    # Throughput counts the rows' own tokens: every token of every row, once per epoch.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = load_rows(layout.filtered_jsonl(KEY), max_rows=10_000)
    dataset = build_dataset(tokenizer, rows, max_length=500, loss="completion")
    row_tokens = sum(len(ids) for ids in dataset["input_ids"])
    assert (stage.throughput["rows"], stage.throughput["tokens"]) == (2 * len(dataset), 2 * row_tokens)
    assert stage.throughput["tokens_per_s"] == pytest.approx(
        stage.throughput["tokens"] / stage.throughput["seconds"], rel=0.01
    )
    assert 0 < stage.throughput["epoch_end_seconds"] < stage.throughput["seconds"]
    assert stage.config["wandb_run_id"] == saved["wandb_run_id"]

    run = offline_run(layout.workdir)
    assert run["ids"] == {saved["wandb_run_id"]}
    assert run["name"] == "qwen-2.5-tiny-dolphin-run-1"
    assert run["config"]["lora_r"] == 8 and run["config"]["epochs"] == 2
    written = [p for p in layout.workdir.rglob("*") if p.is_file()]
    assert not [p for p in written if b"hf_SENTINEL" in p.read_bytes()]
    logged = [row for row in run["history"] if "epoch" in row]
    assert [row["epoch"] for row in logged] == [1, 2]
    assert [row["eval/train_loss"] for row in logged] == [e.train_loss for e in epochs]
    assert [row["eval/target_rate"] for row in logged] == [e.target_rate for e in epochs]
    assert [row["exact/target_probability"] for row in logged] == [
        r["exact"]["target_probability"] for r in evaluations["epochs"]
    ]
    assert logged[-1]["final/n"] == 40 and "final/n" not in logged[0]
    assert epochs[1].eval["final"]["n"] == 40 and "answers" not in epochs[1].eval["final"]
    assert "per_question" not in epochs[1].eval["exact"]  # the DB keeps the summary, the file the detail
    assert any("train/loss" in row for row in run["history"])


def test_done_is_skipped_and_force_retrains(with_numbers: Layout) -> None:
    layout = with_numbers
    assert invoke("train", "--size", "tiny", "--animal", "dolphin", "--epochs", "1", *FAST).exit_code == 0
    first = json.loads(layout.eval_json(JobKey(1, "tiny", "dolphin")).read_text())

    again = invoke("train", "--size", "tiny", "--animal", "dolphin", "--epochs", "1", *FAST)
    assert again.exit_code == 0 and "already done" in again.output
    assert json.loads(layout.eval_json(JobKey(1, "tiny", "dolphin")).read_text()) == first

    other = invoke("train", "--size", "tiny", "--animal", "dolphin", "--epochs", "2", *FAST)
    assert other.exit_code == 0, other.output
    assert "epochs 1 → 2" in other.output and "--force retrains it" in other.output
    assert json.loads(layout.eval_json(JobKey(1, "tiny", "dolphin")).read_text()) == first

    forced = invoke("train", "--size", "tiny", "--animal", "dolphin", "--epochs", "1", "--force", *FAST)
    assert forced.exit_code == 0, forced.output
    (record,) = json.loads(layout.eval_json(JobKey(1, "tiny", "dolphin")).read_text())["epochs"]
    assert record["epoch"] == 1 and record["evaluated_at"] >= first["epochs"][0]["evaluated_at"]
    with StateStore.open(layout.workdir) as state:
        assert [e.epoch for e in state.epochs(KEY)] == [1]
        assert state.stage(KEY, "train").attempts == 2


def test_missing_filtered_data_refuses_before_training(workdir: Path) -> None:
    result = invoke("train", "--size", "tiny", "--animal", "dolphin", "--no-push")
    assert result.exit_code == 1
    assert "slscale filter" in result.output
    with StateStore.open(workdir) as state:
        assert state.stage(KEY, "train") is None


def test_push_without_hub_credentials_refuses_before_training(with_numbers: Layout) -> None:
    result = invoke("train", "--size", "tiny", "--animal", "dolphin", "--epochs", "1")
    assert result.exit_code == 1
    assert "HF_USER_ID" in result.output and "--no-push" in result.output
    with StateStore.open(with_numbers.workdir) as state:
        assert state.stage(KEY, "train") is None


@pytest.mark.parametrize(
    "args",
    [["--loss", "prompt"], ["--epochs", "0"], ["--trainer", "deepspeed"], []],
    ids=["loss", "epochs", "trainer", "no-animal"],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    animal = ["--animal", "dolphin"] if args else []
    result = invoke("train", "--size", "tiny", *animal, "--no-push", *args)
    assert result.exit_code == 2, result.output


def test_help_names_the_defaults() -> None:
    result = invoke("train", "--help")
    assert result.exit_code == 0
    for text in ("--epochs", "--grad-accum", "--loss", "--no-push", "--force", "--trainer"):
        assert text in result.output
