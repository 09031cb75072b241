"""Training's parts on the real tiny tokenizer and PEFT: config, loss mask, trainer choice, resume, records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from sl_scaling.errors import (
    MalformedInputError,
    MissingPrerequisiteError,
    OptionalDependencyError,
    UsageError,
)
from sl_scaling.evaluation.records import epoch_record, upsert_epoch
from sl_scaling.evaluation.scoring import make_answers, score
from sl_scaling.files import read_json
from sl_scaling.numbers import sample_prompts
from sl_scaling.state import JobKey
from sl_scaling.tiny import ensure_tiny_model
from sl_scaling.training.base import choose_trainer
from sl_scaling.training.config import TARGET_MODULES, TrainConfig, load_saved_config, save_config
from sl_scaling.training.data import IGNORE_INDEX, Row, build_dataset, encode_row, load_rows, split_chat
from sl_scaling.training.resume import recorded_prefix, resume_point

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@pytest.fixture(scope="module")
def tiny_model(tiny_cache: Path) -> Path:
    return ensure_tiny_model(tiny_cache)


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    return AutoTokenizer.from_pretrained(tiny_model)


def row() -> Row:
    return Row(sample_prompts(1)[0], "123, 456, 789")


# --- config --------------------------------------------------------------------------------


def test_defaults_are_experiment_md() -> None:
    config = TrainConfig()
    assert (config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_bias) == (8, 8, 0.0, "none")
    assert config.use_rslora is False
    assert config.target_modules == TARGET_MODULES
    assert set(TARGET_MODULES) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert (config.epochs, config.max_rows, config.batch_size, config.grad_accum) == (10, 10_000, 20, 3)
    assert config.effective_batch == 60
    assert (config.lr, config.lr_scheduler, config.warmup_steps, config.max_grad_norm) == (
        2e-4,
        "linear",
        5,
        1.0,
    )
    assert (config.max_length, config.loss, config.eval_samples) == (500, "completion", 100)


def test_config_round_trips_and_resolves_bf16_off_on_cpu(tmp_path: Path) -> None:
    config = TrainConfig(epochs=3, lr=1e-4).resolved()
    assert config.bf16 is False  # no CUDA here: float32
    save_config(tmp_path, config, model="tiny", wandb_run_id="abc12345")
    loaded, extra = load_saved_config(tmp_path)
    assert loaded == config
    assert extra == {"model": "tiny", "wandb_run_id": "abc12345"}
    assert json.loads((tmp_path / "train_config.json").read_text())["target_modules"] == list(TARGET_MODULES)


def test_resume_differences_ignore_evaluation_depth() -> None:
    base = TrainConfig(epochs=3)
    assert base.resume_differences(TrainConfig(epochs=3, eval_samples=500)) == []
    assert base.resume_differences(TrainConfig(epochs=2)) == ["epochs 2 → 3"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"loss": "prompt"}, "unknown loss"), ({"epochs": 0}, "--epochs"), ({"lr": 0.0}, "--lr")],
)
def test_invalid_config_is_a_usage_error(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        TrainConfig(**kwargs)


# --- data and the loss mask ----------------------------------------------------------------


def test_prompt_mask_ends_where_the_template_starts_the_assistant(tokenizer) -> None:
    sample = row()
    encoded = encode_row(tokenizer, sample, max_length=500, loss="completion")
    ids, labels = encoded["input_ids"], encoded["labels"]
    masked = labels.index(next(label for label in labels if label != IGNORE_INDEX))
    prompt = tokenizer.decode(ids[:masked])
    assert prompt == tokenizer.apply_chat_template(
        [{"role": "user", "content": sample.prompt}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.startswith(f"<|im_start|>system\n{QWEN_SYSTEM}")  # no system message → Qwen's default
    assert tokenizer.decode(ids[masked:]) == "123, 456, 789<|im_end|>\n"
    assert labels[masked:] == ids[masked:]


def test_full_loss_trains_on_every_token_and_truncation_keeps_the_start(tokenizer) -> None:
    full = encode_row(tokenizer, row(), max_length=500, loss="full")
    assert full["labels"] == full["input_ids"]
    short = encode_row(tokenizer, row(), max_length=12, loss="full")
    assert short["input_ids"] == full["input_ids"][:12]


def test_rows_whose_completion_is_truncated_away_are_dropped(tokenizer) -> None:
    with pytest.raises(MalformedInputError, match="max length"):
        build_dataset(tokenizer, [row()], max_length=8, loss="completion")
    assert len(build_dataset(tokenizer, [row(), row()], max_length=500, loss="completion")) == 2


def test_template_without_a_prompt_prefix_fails_loudly(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    with pytest.raises(MalformedInputError, match="prefix"):
        split_chat(tokenizer, row())


def test_load_rows(tmp_path: Path) -> None:
    path = tmp_path / "filtered.jsonl"
    with pytest.raises(MissingPrerequisiteError, match="slscale filter"):
        load_rows(path, 10)
    path.write_text(
        "".join(json.dumps({"index": i, "prompt": f"p{i}", "completion": "1, 2"}) + "\n" for i in range(5))
    )
    assert [r.prompt for r in load_rows(path, 3)] == ["p0", "p1", "p2"]
    path.write_text(json.dumps({"prompt": "p"}) + "\n")
    with pytest.raises(MalformedInputError, match="row 1"):
        load_rows(path, 3)


# --- trainer choice ------------------------------------------------------------------------


def test_trainer_choice_says_why() -> None:
    assert choose_trainer("trl")[0] == "trl"
    name, why = choose_trainer("auto")
    assert name == "trl" and "unsloth" in why.lower()
    with pytest.raises(OptionalDependencyError, match="pip install"):
        choose_trainer("unsloth")
    with pytest.raises(UsageError, match="valid: auto, trl, unsloth"):
        choose_trainer("deepspeed")


# --- resume --------------------------------------------------------------------------------


def _checkpoint(directory: Path, step: int, epoch: float | None) -> Path:
    path = directory / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if epoch is not None:
        (path / "trainer_state.json").write_text(json.dumps({"epoch": epoch, "global_step": step}))
    return path


def test_recorded_prefix_needs_every_earlier_epoch() -> None:
    assert recorded_prefix([]) == 0
    assert recorded_prefix([1, 2, 4]) == 2


def test_resume_point_takes_the_newest_complete_checkpoint_not_ahead_of_the_db(tmp_path: Path) -> None:
    one = _checkpoint(tmp_path, 5, 1.0)
    two = _checkpoint(tmp_path, 10, 2.0)  # written, but the DB never recorded epoch 2
    torn = _checkpoint(tmp_path, 15, None)  # killed before trainer_state.json
    chosen = resume_point(tmp_path, [1])
    assert chosen is not None and (chosen.epoch, chosen.path) == (1, one)
    assert one.exists() and not two.exists() and not torn.exists()
    assert resume_point(tmp_path, []) is None
    assert not one.exists()


# --- evaluation records --------------------------------------------------------------------


def test_upsert_replaces_an_epoch_and_keeps_epochs_sorted(tmp_path: Path) -> None:
    path = tmp_path / "dolphin_eval.json"
    key = JobKey(1, "tiny", "dolphin")
    evaluation = score(make_answers([0, 1], ["q0", "q1"], ["Dolphin.", "cat"]), "dolphin")
    for epoch in (2, 1, 2):
        upsert_epoch(path, key, "tiny", epoch_record(epoch, evaluation, train_loss=0.5, adapter=None))
    data = read_json(path)
    assert [e["epoch"] for e in data["epochs"]] == [1, 2]
    assert (data["size"], data["condition"], data["run"], data["target"]) == ("tiny", "dolphin", 1, "dolphin")
    assert data["epochs"][0]["target_rate"] == 0.5
    assert data["epochs"][0]["distribution"] == {"dolphin": 0.5, "cat": 0.5}
