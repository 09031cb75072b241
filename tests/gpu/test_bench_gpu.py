"""The bench's GPU paths on a random-weight 0.5b (run on the lent H200; skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sl_scaling.bench import baselines, measure, shapes
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


def test_training_bench_reports_mfu_and_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "TRAIN_STEPS", 4)
    monkeypatch.setattr(baselines, "FIRST_TIMED_STEP", 2)
    monkeypatch.setattr(measure, "TRAIN_VARIANTS", {})
    source = measure.ModelSource("0.5b", random_weights=True)
    records = measure.bench_training([source], workdir=tmp_path, with_unsloth=False)
    ours = next(r for r in records if r.get("engine") == "trl-fast")
    assert "error" not in ours, records
    assert ours["speed"]["gradient_checkpointing"] is False
    assert 0 < ours["mfu"] < 1 and ours["ratio_vs_trl_default"] > 0
