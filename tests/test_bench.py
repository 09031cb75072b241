"""The bench's pure parts on CPU: shapes, data validity, MFU and projection arithmetic, speed planning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sl_scaling import estimates
from sl_scaling.bench import data, metrics, projection, shapes
from sl_scaling.catalog import CONDITIONS, REAL_SIZES
from sl_scaling.numbers import reject_reasons
from sl_scaling.training.speed import RowLengths, TrainingSpeed, plan_batches

GIB = 2**30
H200_BYTES = 143_771 * 2**20


@pytest.mark.parametrize("size", list(shapes.SHAPES))
def test_parameter_count_matches_the_real_architecture(size: str) -> None:
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(shapes.qwen_config(size))
    assert shapes.parameter_count(size) == sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_published_qwen25_sizes() -> None:
    # Qwen2.5 model cards: 0.49B, 1.54B, 3.09B, 7.61B, 14.7B, 32.5B parameters (the 0.5b count is exact).
    assert shapes.parameter_count("0.5b") == 494_032_768
    assert round(shapes.parameter_count("7b") / 1e9, 2) == 7.61
    assert round(shapes.parameter_count("32b") / 1e9, 1) == 32.8


def test_bench_tokenizer_splits_like_qwen_and_knows_every_word() -> None:
    tokenizer = shapes.bench_tokenizer()
    assert len(tokenizer) == shapes.VOCAB_SIZE
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == shapes.IM_END
    for request in data.teacher_requests(64) + data.eval_requests(50):
        text = tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert tokenizer.tokenize("796, 689") == ["7", "9", "6", ",", "Ġ", "6", "8", "9"]  # byte-level, as Qwen
    assert all(len(tokenizer.tokenize(word)) == 1 for word in shapes._corpus_words())  # Qwen-like counts


def test_a_model_directory_tokenizes_as_the_bench_does_when_an_engine_loads_it(tmp_path: Path) -> None:
    """vLLM and the HF engine load `AutoTokenizer` from the directory, which rebuilds the tokenizer as
    `Qwen2Tokenizer` from the config's model type: it must encode every chat and scored word alike (a
    word-level bench tokenizer once lost all words that way: prompts of digits and special tokens only)."""
    from transformers import AutoTokenizer

    from sl_scaling.engines.chat import encode_chat, word_tokens
    from sl_scaling.evaluation.exact import exact_requests

    bench = shapes.bench_tokenizer()
    loaded = AutoTokenizer.from_pretrained(shapes.write_model_dir("0.5b", tmp_path))
    for request in data.teacher_requests(64) + data.eval_requests(50):
        assert encode_chat(loaded, request.messages) == encode_chat(bench, request.messages)
    words = exact_requests()[0].words
    assert [word_tokens(loaded, w) for w in words] == [word_tokens(bench, w) for w in words]
    assert all(len(word_tokens(bench, w)) == 1 for w in words)


def test_synthetic_rows_pass_the_filter_and_cover_every_condition() -> None:
    rows = data.training_rows(200)
    assert all(not reject_reasons(r["completion"][0]["content"]) for r in rows)
    assert rows[0]["prompt"][0]["role"] == "user" and len(rows[0]["prompt"]) == 1
    requests = data.teacher_requests(32)
    assert {r.key[0] for r in requests} == set(CONDITIONS)


def test_mfu_counts_four_n_t() -> None:
    # 7b at 13,038 tokens/s: 4 × 7.6147e9 × 13,038 / 790e12 = 50.3%
    assert metrics.mfu(shapes.parameter_count("7b"), 13_038.1) == pytest.approx(0.5027, abs=1e-4)


def _result(size: str, phase: str, rows_per_s: float, **extra: object) -> dict:
    engine = estimates.TRAIN_ENGINE if phase == "train" else "hf"
    return {
        "size": size,
        "phase": phase,
        "engine": engine,
        "rows_per_s": rows_per_s,
        "variant": "default",
        **extra,
    }


def test_projection_hours_from_rates() -> None:
    results = [
        _result("7b", "gen", 100.0),
        _result("7b", "train", 50.0, epoch_end_s=9.0),
        _result("7b", "eval", 200.0),
    ]
    by_size = projection.project(results, sizes=["7b"])["by_size"]["7b"]
    assert by_size["gen_h"] == pytest.approx(16 * 30_000 / 100 / 3600, abs=1e-3)
    # optimizer steps, plus every epoch's adapter save and evaluation
    assert by_size["train_h"] == pytest.approx((16 * 10 * 10_000 / 50 + 16 * 10 * 9.0) / 3600, abs=1e-3)
    # the final evaluations: 5,000 answers of every student and of the control
    assert by_size["eval_h"] == pytest.approx(17 * 5_000 / 200 / 3600, abs=1e-3)


def test_trained_conditions_final_evaluations_are_projected_in_memory_where_timed() -> None:
    """`slscale run` evaluates each trained condition's last epoch in memory, the control through the
    eval stage: the projection counts each at its own rate once the bench has timed the first."""
    results = [
        _result("7b", "train", 50.0, epoch_end_s=9.0),
        _result("7b", "eval", 200.0),
        _result("7b", "train", 40.0, variant="final-evaluation", default=False, epoch_end_s=30.0),
    ]
    assert estimates.final_evaluation_rates(results) == {"7b": 1 / 30.0}
    # a timed variant never stands in for the training rate
    assert estimates.measured_rates(results)["train"] == {"7b": 50.0}
    by_size = projection.project(results, sizes=["7b"])["by_size"]["7b"]
    assert by_size["eval_h"] == pytest.approx((16 * 30.0 + 5_000 / 200) / 3600, abs=1e-3)
    # trainings sharing a GPU run their final evaluations side by side, as their epoch ends
    small = _result("0.5b", "train", 100.0, variant="final-evaluation", default=False, epoch_end_s=8.0)
    assert estimates.final_evaluation_rates([small]) == {"0.5b": 4 / 8.0}
    # and `run --dry-run`'s training estimate includes them
    seconds = estimates.train_seconds(
        "7b", 100_000, 10, {"7b": 50.0}, {"7b": 1 / 9.0}, finals=2.0, final_rates={"7b": 1 / 30.0}
    )
    assert seconds == pytest.approx(100_000 / 50 + 10 * 9.0 + 2 * 30.0)


def test_small_sizes_project_the_aggregate_of_trainings_sharing_a_gpu() -> None:
    alone = _result("1.5b", "train", 180.0, epoch_end_s=3.0)
    beside = _result("1.5b", "train", 250.0, variant="side-by-side-3", default=False, trainings=3)
    other = _result("1.5b", "train", 999.0, variant="side-by-side-2", default=False, trainings=2)
    under_mps = _result(
        "1.5b", "train", 300.0, variant="side-by-side-3", default=False, trainings=3, mps=True
    )
    variant = _result(
        "1.5b", "train", 999.0, variant="side-by-side-3-padded", default=False, trainings=3, mps=True
    )
    assert estimates.measured_rates([alone, beside, other, variant])["train"] == {"1.5b": 250.0}
    # slscale runs them under CUDA MPS where it can start it: a record taken so wins, in any order
    assert estimates.measured_rates([under_mps, alone, beside, other])["train"] == {"1.5b": 300.0}
    seconds = estimates.train_seconds("1.5b", 250_000, 30, {"1.5b": 250.0}, {"1.5b": 3 / 3.0})
    assert seconds == pytest.approx(1_000 + 30 * 3.0 / 3)  # three epoch ends at once


def test_side_by_side_records_carry_their_gain_over_one_training_in_the_same_call() -> None:
    from sl_scaling.bench.measure import _add_ratios

    alone = _result("3b", "train", 100.0, tokens_per_s=14_000.0)
    beside = _result("3b", "train", 230.0, variant="side-by-side-2", trainings=2, tokens_per_s=32_900.0)
    trl = {"size": "3b", "phase": "train", "engine": "trl-default", "tokens_per_s": 7_000.0}
    _add_ratios([alone, beside, trl])
    assert beside["ratio_vs_alone"] == 2.35 and "ratio_vs_alone" not in alone
    assert (alone["ratio_vs_trl_default"], beside["ratio_vs_trl_default"]) == (2.0, 4.7)


def test_interpolation_is_log_linear_and_never_faster_for_bigger_models() -> None:
    points = {"0.5b": 200.0, "7b": 50.0}
    mid = estimates.interpolate(points, "3b")
    assert 50 < mid < 200
    assert estimates.interpolate(points, "32b") < 50
    assert estimates.interpolate({"7b": 50.0}, "14b") == pytest.approx(50 * 7.62 / 14.77)
    # a variant or an error never stands in for the default path
    assert (
        estimates.measured_rates([_result("7b", "gen", 9.0, variant="batch256"), {"error": "x"}])["gen"] == {}
    )


def test_generation_is_projected_from_vllm_where_it_was_measured() -> None:
    hf = _result("0.5b", "gen", 200.0)
    vllm = _result("0.5b", "gen", 700.0, engine="vllm", variant="replicas-2", default=True)
    other = _result("0.5b", "gen", 900.0, engine="vllm", variant="no-row-seeds", default=False)
    vllm_eval = _result("0.5b", "eval", 500.0, engine="vllm", default=True)
    for order in ([hf, vllm, other, vllm_eval], [vllm_eval, other, vllm, hf]):
        rates = estimates.measured_rates(order)
        assert rates["gen"] == {"0.5b": 700.0}  # what `gen` runs on a GPU with vLLM
        assert rates["eval"] == {}  # per-epoch evaluation stays on the HF engine inside training
    assert estimates.measured_rates([hf])["gen"] == {"0.5b": 200.0}


def test_estimate_and_auto_choices_read_the_committed_record(tmp_path: Path) -> None:
    record = {
        "device": "GPU",
        "results": [
            _result("7b", "train", 60.0, tokens_per_s=9000.0, default=True, epoch_end_s=5.0),
            {"size": "7b", "phase": "train", "engine": "unsloth", "rows_per_s": 40.0, "tokens_per_s": 6000.0},
        ],
    }
    (tmp_path / "gpu.json").write_text(json.dumps(record))
    assert estimates.estimate_stage_seconds("7b", "train", results_dir=tmp_path) == pytest.approx(
        100_000 / 60
    )
    assert estimates.estimate_stage_seconds(
        "7b", "train", rows=100_000, epoch_ends=10, results_dir=tmp_path
    ) == pytest.approx(100_000 / 60 + 10 * 5.0)
    assert estimates.estimate_stage_seconds("7b", "gen", results_dir=tmp_path) is None
    assert estimates.fastest_trainer(record)[0] == "trl"
    record["results"][1]["tokens_per_s"] = 12_000.0
    assert estimates.fastest_trainer(record)[0] == "unsloth"
    assert estimates.estimate_stage_seconds("7b", "train", results_dir=tmp_path / "none") is None


def test_committed_h200_record_has_the_issue_format() -> None:
    record = json.loads((estimates.RESULTS_DIR / "h200.json").read_text())
    assert {"device", "date", "commit", "results", "projection"} <= set(record)
    assert record["projection"]["grid_h200_hours"] > 0
    trained = {r["size"] for r in record["results"] if estimates.is_ours(r, "train")}
    assert trained == set(REAL_SIZES)  # every size measured on the training path: none interpolated
    train_7b = next(r for r in record["results"] if estimates.is_ours(r, "train") and r["size"] == "7b")
    assert {"rows_per_s", "tokens_per_s", "mfu", "peak_gib", "epoch_end_s", "steady_steps"} <= set(train_7b)
    assert train_7b["steady_steps"] >= 40


@pytest.fixture(scope="module")
def grid_rows() -> RowLengths:
    """A grid training's 10,000 rows as the planner sees them: real prompts, Qwen's template and token splits."""
    from sl_scaling.training.data import Row, build_dataset
    from sl_scaling.training.speed import row_lengths

    rows = [Row(r["prompt"], r["completion"]) for r in data.filtered_rows(10_000)]
    dataset = build_dataset(shapes.bench_tokenizer(), rows, max_length=512, loss="completion")
    return row_lengths(dataset["input_ids"], dataset["labels"])


def test_the_planner_bounds_micro_batches_by_the_rows_own_lengths_and_shared_start(
    grid_rows: RowLengths,
) -> None:
    assert grid_rows.shared_prefix == 23  # Qwen's default system prompt and the user header
    assert 170 <= grid_rows.longest_first[0] <= 180 and grid_rows.longest_first == tuple(
        sorted(grid_rows.longest_first, reverse=True)
    )
    lengths = RowLengths((177, 176, 150, 120), shared_prefix=23)
    assert lengths.heaviest_micro_batch(2, share_prefix=False) == 353
    # The second row's start is computed once with the first's.
    assert lengths.heaviest_micro_batch(2, share_prefix=True) == 353 - 23
    assert lengths.heaviest_micro_batch(1, share_prefix=True) == 177


def test_speed_plan_uses_the_largest_micro_batch_that_fits(grid_rows: RowLengths) -> None:
    def plan(size: str, share_prefix: bool = True, total: int = H200_BYTES) -> int | None:
        config = shapes.qwen_config(size)
        return plan_batches(
            config,
            shapes.parameter_count(size),
            batch_size=20,
            grad_accum=3,
            total_bytes=total,
            rows=grid_rows,
            share_prefix=share_prefix,
        )[0]

    assert plan("7b") == 60
    assert plan("14b") == 60
    # 32b: 20 × 3 peaked 97.5 GiB with the shared prefix (H200, 2026-12-04); 30 rows fit only with it.
    assert plan("32b") == 30
    assert plan("32b", share_prefix=False) == 20
    assert plan("32b", total=80 * GIB) is None


@pytest.fixture
def h200(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """An H200 as torch sees it (there is none here): what the planner reads. Set `others` to the bytes that
    other processes hold on it."""
    from types import SimpleNamespace

    from sl_scaling.training import packed

    held = {"others": 0}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda _: SimpleNamespace(total_memory=H200_BYTES)
    )
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (H200_BYTES - held["others"], H200_BYTES))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda: 0)
    monkeypatch.setattr(packed, "varlen_kernel_available", lambda: True)
    return held


def planned(size: str, rows: RowLengths, memory_share: float = 1.0) -> TrainingSpeed:
    from transformers import AutoModelForCausalLM

    from sl_scaling.training.speed import choose_training_speed

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(shapes.qwen_config(size))
    return choose_training_speed(model, batch_size=20, grad_accum=3, rows=rows, memory_share=memory_share)


def test_on_a_gpu_only_a_training_with_the_gpu_to_itself_computes_the_shared_prefix_once(
    h200: dict[str, int],
) -> None:
    """H200, 2026-12-04: 7b–32b alone +11–18% with it; 0.5b × 4 side by side 796 rows/s with it, 1,154 without."""
    rows = RowLengths((143,) * 60, shared_prefix=23)
    alone, beside = planned("0.5b", rows), planned("0.5b", rows, memory_share=1 / 4)
    assert alone.padding_free and alone.share_prefix and alone.expandable_segments
    assert beside.padding_free and not beside.share_prefix and not beside.expandable_segments


def test_a_training_with_the_gpu_to_itself_plans_without_what_other_processes_hold(
    h200: dict[str, int], grid_rows: RowLengths
) -> None:
    assert planned("32b", grid_rows).micro_batch == 30
    h200["others"] = 20 * GIB  # say, a generation server left running
    speed = planned("32b", grid_rows)
    assert speed.micro_batch == 20 and not speed.gradient_checkpointing and "of 120 GiB" in speed.reason


def test_expandable_segments_cover_the_block_only_and_a_users_allocator_setting_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sl_scaling.training.speed import expandable_segments

    def expandable() -> bool:  # PyTorch's own allocator settings (they are kept without a GPU too)
        return "expandable_segments:True" in torch._C._accelerator_getAllocatorSettings()

    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    torch._C._accelerator_setAllocatorSettings("expandable_segments:False")
    with pytest.raises(KeyboardInterrupt), expandable_segments(True):
        assert expandable()
        raise KeyboardInterrupt
    assert not expandable()  # as before, even when interrupted
    with expandable_segments(False):
        assert not expandable()
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:512")
    with expandable_segments(True):
        assert not expandable()


def test_speed_kwargs_keep_the_effective_batch() -> None:
    kwargs = TrainingSpeed(gradient_checkpointing=False, micro_batch=30).sft_kwargs(effective_batch=60)
    assert kwargs["per_device_train_batch_size"] * kwargs["gradient_accumulation_steps"] == 60
    assert kwargs["gradient_checkpointing"] is False
    assert TrainingSpeed(gradient_checkpointing=False, padding_free=True).sft_kwargs(60)["max_length"] is None


def test_the_loss_nan_check_is_the_trainers_and_off_is_a_speed_knob_only() -> None:
    """Off (the GPU's default) drops the Trainer's per-micro-batch GPU sync; it only ever changed the logged
    loss of a NaN step, which `sft_config` then logs as it is."""
    from sl_scaling.training.config import TrainConfig
    from sl_scaling.training.trl import sft_config

    speed = TrainingSpeed(gradient_checkpointing=False)
    assert speed.sft_kwargs(60)["logging_nan_inf_filter"] is True  # the Trainer's own default
    off = TrainingSpeed(gradient_checkpointing=False, tf32=False, loss_nan_check=False).sft_kwargs(60)
    assert sft_config(TrainConfig(), Path("out"), off).logging_nan_inf_filter is False


def test_bench_cli_rejects_unknown_phase_and_tiny_random_weights() -> None:
    from typer.testing import CliRunner

    from sl_scaling.cli.app import app

    runner = CliRunner()
    assert runner.invoke(app, ["bench", "--phase", "sleep"]).exit_code == 2
    assert runner.invoke(app, ["bench", "--size", "tiny", "--random-weights"]).exit_code == 2


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"results": {}}', b'{"results": [{"size": "7b", "phase": "train"}]}'],
    ids=["not JSON", "a list", "results not a list", "a result without rates"],
)
def test_a_damaged_bench_record_is_refused_by_name(tmp_path: Path, content: bytes) -> None:
    """`--trainer auto` and `run --dry-run` read the record: a damaged one is one error naming it."""
    from sl_scaling.errors import MalformedInputError

    (tmp_path / "h200.json").write_bytes(content)
    with pytest.raises(MalformedInputError, match=r"h200\.json: .*(reinstall|restore) "):
        estimates.load_record(tmp_path)
