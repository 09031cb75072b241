"""The bench's GPU paths on a random-weight 0.5b (run on the lent H200; skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sl_scaling.bench import measure, shapes
from sl_scaling.bench.variants import generation_variants

pytestmark = pytest.mark.gpu


def test_generation_bench_compares_engine_with_plain_generate() -> None:
    model = shapes.random_model("0.5b")
    records = measure.bench_generation(
        "0.5b",
        model,
        shapes.bench_tokenizer(),
        phase="gen",
        n=64,
        max_new_tokens=8,
        variants={"default": generation_variants(64)["default"]},
    )
    plain, ours = records
    assert plain["engine"] == "plain-generate" and plain["tokens"] == 64 * 8
    assert ours["variant"] == "default" and ours["rows"] == 64
    assert ours["ratio_vs_plain_generate"] > 0 and ours["peak_gib"] > 0


def test_training_bench_times_slscale_trains_path_alone_and_side_by_side(tmp_path: Path) -> None:
    source = measure.ModelSource("0.5b", random_weights=True)
    # The bench's own steps: at 20 (and 8) the four trainings side by side, whose processes start seconds apart,
    # did not overlap past warm-up on the H200 (2026-12-04); at 45 they did in every bench call.
    records = measure.bench_training([source], workdir=tmp_path, with_unsloth=False)
    by_variant = {r.get("variant", r.get("engine")): r for r in records}
    assert not [r for r in records if "error" in r], records
    alone, beside = by_variant["default"], by_variant["side-by-side-4"]
    assert alone["engine"] == "slscale-train" and alone["steady_steps"] == 40 and alone["rows"] == 40 * 60
    assert alone["batches"]["gradient_checkpointing"] is False and alone["epoch_end_s"] > 0
    assert 0 < alone["mfu"] < 1 and alone["ratio_vs_trl_default"] > 0
    assert beside["trainings"] == 4 and len(beside["each_rows_per_s"]) == 4 and beside["rows_per_s"] > 0
