"""The filter stage: reject reasons per completion, then the 10k subsample, into `filtered.jsonl`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sl_scaling.context import Context
from sl_scaling.errors import MalformedInputError, MissingPrerequisiteError, SlscaleError
from sl_scaling.files import atomic_write_jsonl, read_jsonl
from sl_scaling.grid import FILTER as STAGE
from sl_scaling.grid import GEN, TRAIN_ROWS
from sl_scaling.numbers import REASONS, reject_reasons, subsample
from sl_scaling.numbers.filtering import SUBSAMPLE_SEED
from sl_scaling.progress import Reporter
from sl_scaling.state import JobKey, StateStore


@dataclass(frozen=True)
class FilterSummary:
    key: JobKey
    rows: int
    valid: int  # completions with no reject reason
    kept: int  # rows written to filtered.jsonl (≤ 10,000)
    reasons: dict[str, int]  # rows per reason; a row may have several
    subsampled: bool
    skipped_lines: int = 0  # malformed raw.jsonl lines skipped with --skip-invalid

    def counts(self) -> dict[str, Any]:
        """What the DB records for the stage."""
        return {
            "rows": self.rows,
            "valid": self.valid,
            "kept": self.kept,
            "reasons": self.reasons,
            "subsampled": self.subsampled,
            "subsample_seed": SUBSAMPLE_SEED,
            "skipped_lines": self.skipped_lines,
        }


class NothingKeptError(SlscaleError):
    """Some condition kept no rows at all; carries every summary so the CLI can still show the table."""

    def __init__(self, message: str, summaries: list[FilterSummary]) -> None:
        super().__init__(message)
        self.summaries = summaries


def _gen_command(keys: list[JobKey]) -> str:
    sizes = " ".join(f"--size {s}" for s in dict.fromkeys(k.size for k in keys))
    animals = " ".join(f"--animal {c}" for c in dict.fromkeys(k.condition for k in keys))
    run = "" if keys[0].run == 1 else f" --run {keys[0].run}"
    return f"slscale gen {sizes} {animals}{run}"


def _check_generated(state: StateStore, keys: list[JobKey]) -> None:
    missing = [key for key in keys if not state.is_done(key, GEN)]
    if missing:
        names = ", ".join(str(k) for k in missing[:4]) + (" …" if len(missing) > 4 else "")
        raise MissingPrerequisiteError(
            f"no finished generation for {names}; run `{_gen_command(missing)}` first"
        )


def _completions(path: Path, skip_invalid: bool) -> tuple[list[dict[str, Any]], int]:
    """Rows with an int index and str prompt and completion; anything else is malformed (or skipped)."""
    rows, skipped = read_jsonl(path, skip_invalid=skip_invalid)
    good = []
    for number, row in enumerate(rows, start=1):
        index, prompt, completion = row.get("index"), row.get("prompt"), row.get("completion")
        if isinstance(index, int) and isinstance(prompt, str) and isinstance(completion, str):
            good.append(row)
        elif skip_invalid:
            skipped += 1
        else:
            raise MalformedInputError(
                f"{path}: row {number} has no integer 'index' and string 'prompt' and 'completion'; "
                "fix or delete it, "
                "or pass --skip-invalid"
            )
    return good, skipped


def filter_rows(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows with no reject reason, and how many rows each reason rejected."""
    reasons: Counter[str] = Counter()
    valid = []
    for row in rows:
        found = reject_reasons(row["completion"])
        reasons.update(found)
        if not found:
            valid.append({"index": row["index"], "prompt": row["prompt"], "completion": row["completion"]})
    return valid, {reason: reasons[reason] for reason in REASONS}


def filter_one(
    ctx: Context, state: StateStore, key: JobKey, *, skip_invalid: bool, reporter: Reporter
) -> FilterSummary:
    raw = ctx.layout.raw_jsonl(key)
    if not raw.exists():
        raise MissingPrerequisiteError(f"{raw} is missing; run `{_gen_command([key])}` again")
    rows, skipped = _completions(raw, skip_invalid)
    if skipped:
        reporter.event(f"{STAGE} {key}: skipped {skipped} malformed line(s) of {raw}")
    valid, reasons = filter_rows(rows)
    kept = subsample(valid)
    summary = FilterSummary(key, len(rows), len(valid), len(kept), reasons, len(valid) > TRAIN_ROWS, skipped)
    atomic_write_jsonl(ctx.layout.filtered_jsonl(key), kept)
    if not kept:
        state.update_stage(key, STAGE, counts=summary.counts())
        state.fail_stage(key, STAGE, "no completion passed the filter")
        return summary
    state.finish_stage(key, STAGE, counts=summary.counts())
    if summary.subsampled:
        reporter.event(
            f"{STAGE} {key}: {len(valid)} rows passed; kept a random {TRAIN_ROWS:,} (seed {SUBSAMPLE_SEED})"
        )
    elif len(rows) >= TRAIN_ROWS:  # enough were generated, too few passed: worth a look
        reporter.event(
            f"{STAGE} {key}: only {len(valid)} rows passed (fewer than {TRAIN_ROWS:,}), so all of them are kept"
        )
    else:  # fewer were generated than the subsample takes (tiny, a small --n): nothing to flag
        reporter.event(f"{STAGE} {key}: {len(valid)} of {len(rows)} rows passed; all of them are kept")
    return summary


def run_filter(
    ctx: Context,
    sizes: list[str],
    conditions: list[str],
    *,
    run: int,
    skip_invalid: bool,
    reporter: Reporter,
) -> list[FilterSummary]:
    """Filter every chosen (size, condition); all must have finished `gen` first."""
    keys = [JobKey(run, size, condition) for size in sizes for condition in conditions]
    summaries: list[FilterSummary] = []
    with ctx.state() as state:
        _check_generated(state, keys)
        for key in keys:
            with state.running(key, STAGE, {"skip_invalid": skip_invalid}):
                summaries.append(filter_one(ctx, state, key, skip_invalid=skip_invalid, reporter=reporter))
    empty = [s.key for s in summaries if s.kept == 0]
    if empty:
        raise NothingKeptError(
            f"no completion passed the filter for {', '.join(str(k) for k in empty)}; the teacher's answers "
            "are not number lists (see the reasons above) — check the model or --max-new-tokens",
            summaries,
        )
    return summaries
