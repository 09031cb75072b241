"""Time estimates from the shipped `slscale bench` records: rows/s per stage and size, interpolated.

Pure (no torch, no bench code): the product reads it for `run --dry-run` and `--trainer auto`; the
bench writes the records (`benchmarks/results/*.json`) and projects the whole grid with it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sl_scaling.catalog import CONDITIONS, SIZE_PARAMS_B
from sl_scaling.errors import MalformedInputError
from sl_scaling.files import read_json
from sl_scaling.grid import EPOCHS, EVAL, FINAL_EVAL_SAMPLES, GEN, PROMPTS, TRAIN, TRAIN_ROWS

#: The stages the bench measures (filtering is CPU work of seconds).
STAGES = (GEN, TRAIN, EVAL)
#: The committed `slscale bench` records, shipped as package data so an installed copy reads them too.
RESULTS_DIR = Path(__file__).with_name("bench") / "records"


#: The training bench's engine: `slscale train`'s own path (bench/train_path.py).
TRAIN_ENGINE = "slscale-train"
#: Its variant whose one epoch, the last, ends with the final evaluation in memory (`bench.TRAIN_VARIANTS`).
FINAL_EVALUATION_VARIANT = "final-evaluation"


def grid_rows(stage: str, conditions: int = len(CONDITIONS)) -> int:
    """Rows one size's grid pushes through a stage. Eval: the final evaluations' answers (every student's
    last epoch and the control); the per-epoch evaluations are part of training's time (its epoch ends)."""
    if stage == GEN:
        return conditions * PROMPTS
    if stage == TRAIN:
        return conditions * EPOCHS * TRAIN_ROWS
    if stage == EVAL:
        return (conditions + 1) * FINAL_EVAL_SAMPLES
    raise ValueError(f"unknown stage {stage!r}")


def is_ours(result: dict[str, Any], stage: str) -> bool:
    """Our default path for `stage` on a GPU: vLLM where it is installed (else the HF engine) for `gen`
    and for `eval`, the final evaluations (every adapter of a size in one load: the `adapters-` records).
    The per-epoch evaluations run in memory on the HF engine inside training (part of train's time)."""
    if "error" in result or result.get("phase") != stage:
        return False
    if stage == TRAIN:
        return result.get("engine") == TRAIN_ENGINE and result.get("default", True)
    if result.get("engine") == "vllm":
        final_evaluation = str(result.get("variant", "")).startswith("adapters-")
        return bool(result.get("default")) and (stage == GEN or final_evaluation)
    return result.get("engine") == "hf" and result.get("variant", "default") == "default"


def _side_by_side(result: dict[str, Any]) -> bool:
    """The aggregate of a size's default number of trainings sharing one GPU, as slscale runs them."""
    from sl_scaling.training.speed import trainings_per_gpu

    return (
        "error" not in result
        and result.get("engine") == TRAIN_ENGINE
        and result.get("trainings", 0) > 1
        and result["trainings"] == trainings_per_gpu(result.get("size", ""))
        and result.get("variant") == f"side-by-side-{result['trainings']}"  # not a variant's
    )


def measured_rates(results: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """rows/s of our default path, per stage and measured size (vLLM's over the HF engine's for gen; for
    training, per GPU: the aggregate of the trainings sharing it where that is the size's default, under
    CUDA MPS where measured so — slscale starts it where it can — else time-sliced)."""
    results = list(results)
    rates: dict[str, dict[str, float]] = {stage: {} for stage in STAGES}
    from_vllm: set[tuple[str, str]] = set()
    for result in results:
        for stage in STAGES:
            size = result.get("size")
            if not is_ours(result, stage) or size not in SIZE_PARAMS_B:
                continue
            vllm = result.get("engine") == "vllm"
            if vllm or (stage, size) not in from_vllm:
                rates[stage][size] = float(result["rows_per_s"])
            if vllm:
                from_vllm.add((stage, size))
    shared = [r for r in results if _side_by_side(r) and r["size"] in SIZE_PARAMS_B]
    for result in sorted(shared, key=lambda r: bool(r.get("mps"))):  # MPS last: it wins
        rates[TRAIN][result["size"]] = float(result["rows_per_s"])
    return rates


def _epoch_ends_per_second(results: Iterable[dict[str, Any]], variant: str) -> dict[str, float]:
    """Epoch ends per second of GPU time of the training records of `variant`, per measured size:
    trainings sharing a GPU end their epochs side by side."""
    from sl_scaling.training.speed import trainings_per_gpu

    return {
        r["size"]: trainings_per_gpu(r["size"]) / float(r["epoch_end_s"])
        for r in results
        if "error" not in r
        and r.get("engine") == TRAIN_ENGINE
        and r.get("variant", "default") == variant
        and r.get("size") in SIZE_PARAMS_B
        and r.get("epoch_end_s")
    }


def epoch_end_rates(results: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Epoch ends (one epoch's adapter save and evaluation) per second of GPU time, per measured size, on
    the default path: the part of training that is not steps."""
    return _epoch_ends_per_second(results, "default")


def final_evaluation_rates(results: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Final evaluations in memory per second of GPU time, per measured size: a last epoch's end with the
    final evaluation, so one regular epoch end more than the evaluation alone (an upper bound by a few
    seconds)."""
    return _epoch_ends_per_second(results, FINAL_EVALUATION_VARIANT)


def train_seconds(
    size: str,
    rows: int,
    epoch_ends: int,
    rates: dict[str, float],
    ends: dict[str, float],
    *,
    finals: float = 0.0,
    final_rates: dict[str, float] | None = None,
) -> float | None:
    """GPU seconds for `rows` rows of optimizer steps, `epoch_ends` epoch ends (save + evaluation) and
    `finals` final evaluations in memory (in 5,000-answer units; counted only where the bench timed them)."""
    rate, end_rate = interpolate(rates, size), interpolate(ends, size)
    final_rate = interpolate(final_rates or {}, size)
    if rate is None:
        return None
    seconds = rows / rate + (epoch_ends / end_rate if end_rate else 0.0)
    return seconds + (finals / final_rate if final_rate else 0.0)


def final_evaluation_seconds(
    size: str, eval_rates: dict[str, float], final_rates: dict[str, float], trained: int = len(CONDITIONS)
) -> float | None:
    """GPU seconds for a size's final evaluations as `slscale run` runs them: the `trained` conditions' in
    memory at their last epoch (where the bench timed that), the control's at the eval stage's rate — and
    every one at that rate where the in-memory evaluation is untimed."""
    rate, final_rate = interpolate(eval_rates, size), interpolate(final_rates, size)
    if rate is None:
        return None
    if final_rate is None:
        return grid_rows(EVAL) / rate
    return trained / final_rate + FINAL_EVAL_SAMPLES / rate


def interpolate(points: dict[str, float], size: str) -> float | None:
    """rows/s at `size` from measured sizes: piecewise linear in log(N)–log(rate), extended beyond the
    measured range with the end segment's slope (never rising with N); one point alone scales as 1/N."""
    if not points:
        return None
    if size in points:
        return points[size]
    xs = sorted((math.log(SIZE_PARAMS_B[s]), math.log(r)) for s, r in points.items())
    x = math.log(SIZE_PARAMS_B[size])
    if len(xs) == 1:
        return math.exp(xs[0][1] - (x - xs[0][0]))
    inner = [(a, b) for a, b in itertools.pairwise(xs) if a[0] <= x <= b[0]]
    (x0, y0), (x1, y1) = inner[0] if inner else (xs[:2] if x < xs[0][0] else xs[-2:])
    slope = (y1 - y0) / (x1 - x0)
    return math.exp(y0 + (slope if inner else min(slope, 0.0)) * (x - x0))


def load_record(results_dir: Path | None = None) -> dict[str, Any] | None:
    """The newest bench record (`*.json`) in the results directory, or None; a damaged one is refused by name."""
    directory = results_dir or RESULTS_DIR
    files = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime) if directory.is_dir() else []
    if not files:
        return None
    path = files[-1]
    record = read_json(path)
    results = record.get("results")
    if not isinstance(results, list) or not all(_readable(r) for r in results):
        raise MalformedInputError(
            f"{path}: not a bench record (a 'results' list of measurements, each with its size, phase and "
            "rates, or an error); reinstall sl-scaling or delete it"
        )
    return record


def _readable(result: Any) -> bool:
    """A measurement the estimates can use, or a failed one (`error`), which they skip."""
    if not isinstance(result, dict) or "error" in result:
        return isinstance(result, dict)
    rates = all(isinstance(result.get(k), int | float) for k in ("rows_per_s", "tokens_per_s"))
    return rates and isinstance(result.get("size"), str) and isinstance(result.get("phase"), str)


def estimate_stage_seconds(
    size: str,
    stage: str,
    *,
    rows: int | None = None,
    epoch_ends: int = 0,
    finals: float = 0.0,
    results_dir: Path | None = None,
) -> float | None:
    """Seconds one condition's `stage` takes at `size` (rows default to the grid's per condition: gen
    30,000, train 10 epochs × 10,000, eval 5,000 answers; training adds `epoch_ends` adapter saves and
    evaluations and `finals` final evaluations in memory, in 5,000-answer units); None without a bench
    record."""
    record = load_record(results_dir)
    if record is None:
        return None
    results = record.get("results", [])
    rows = rows if rows is not None else grid_rows(stage, conditions=1)
    rates = measured_rates(results)[stage]
    if stage == TRAIN:
        return train_seconds(
            size, rows, epoch_ends, rates, epoch_end_rates(results),
            finals=finals, final_rates=final_evaluation_rates(results),
        )  # fmt: skip
    rate = interpolate(rates, size)
    return None if rate is None else rows / rate


def _ours_and(record: dict[str, Any], phase: str, engine: str) -> list[tuple[str, float, float]]:
    """(size, ours tokens/s, `engine` tokens/s) for sizes where the record measured both."""
    results = [r for r in record.get("results", []) if "error" not in r and r.get("phase") == phase]
    ours = {r["size"]: r["tokens_per_s"] for r in results if is_ours(r, phase)}
    other = {r["size"]: r["tokens_per_s"] for r in results if r.get("engine") == engine}
    return [(s, ours[s], other[s]) for s in ours if s in other]


def fastest_trainer(record: dict[str, Any] | None = None) -> tuple[str, str]:
    """`--trainer auto`: trl (our fast path) or unsloth, whichever the bench measured faster, and why."""
    record = record if record is not None else load_record()
    pairs = _ours_and(record, TRAIN, "unsloth") if record else []
    if not pairs:
        return "trl", "no bench record compares it with Unsloth; the TRL fast path is the default"
    size, ours, unsloth = max(pairs, key=lambda p: SIZE_PARAMS_B[p[0]])
    where = record.get("device", "the bench machine")
    if unsloth > ours:
        return "unsloth", f"Unsloth measured {unsloth / ours:.2f}× faster at {size} on {where}"
    return "trl", f"the TRL fast path measured {ours / unsloth:.2f}× Unsloth at {size} on {where}"
