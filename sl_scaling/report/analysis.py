"""From evaluation records to the report's numbers: matrices, lifts, contrasts, tests, curves, gaps."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from sl_scaling.catalog import ANIMALS, CONDITIONS, CONTROL, NEUTRAL, SIZE_PARAMS_B, SIZES
from sl_scaling.evaluation.records import describe_answers
from sl_scaling.report.data import LABELS, ROWS, EvalRecord, Grid
from sl_scaling.report.stats import (
    PermutationResult,
    Spread,
    between_runs,
    bootstrap_label_rate,
    bootstrap_rates,
    diagonal_contrast,
    draw_questions,
    holm,
    percentile_ci,
    permutation_test,
)

K = len(LABELS)
ALPHA = 0.05


@dataclass(frozen=True)
class Options:
    n_boot: int = 2000
    n_perm: int = 5000
    seed: int = 20240917
    epoch: int | None = None
    #: Also resample answers within each drawn question (two-stage; conservative, see docs/report.md).
    resample_answers: bool = False

    @property
    def bootstrap_scheme(self) -> str:
        return "questions+answers" if self.resample_answers else "questions"


@dataclass(frozen=True)
class Estimate:
    """A number with its 95% interval; with ≥ 2 runs the interval is a t interval over runs."""

    value: float
    ci_low: float
    ci_high: float
    ci_method: str
    bootstrap_ci: tuple[float, float]
    runs: Spread | None = None


@dataclass(frozen=True)
class AnimalLift:
    animal: str
    student_rate: float
    neutral_rate: float | None
    control_rate: float | None
    vs_neutral: Estimate | None
    vs_control: Estimate | None
    #: The same lift from the exact preference (no sampling noise, so no interval), mean over runs.
    exact_vs_neutral: float | None = None


@dataclass(frozen=True)
class Contrast:
    """Each student's rate for its own animal (diagonal) vs other students' rate for it (off-diagonal)."""

    students: list[str]
    diagonal_mean: float
    off_diagonal_mean: float
    effect: Estimate
    permutation: PermutationResult
    p_holm: float | None = None


@dataclass
class SizeResult:
    size: str
    epoch: int | None
    runs: list[int]
    rows: list[str]
    n: dict[str, list[int]]
    matrix: np.ndarray
    matrix_low: np.ndarray
    matrix_high: np.ndarray
    per_run_matrix: dict[int, np.ndarray]
    #: Which answers the rates come from: "final evaluation (n=5,000)" or "per-epoch evaluation (n=100)".
    evaluation: str = ""
    #: The exact preference (rows × LABELS), mean over runs; NaN where a model was not scored.
    exact_matrix: np.ndarray | None = None
    mean_exact_lift_vs_neutral: float | None = None
    lifts: list[AnimalLift] = field(default_factory=list)
    mean_lift_vs_neutral: Estimate | None = None
    mean_lift_vs_control: Estimate | None = None
    contrast: Contrast | None = None


@dataclass(frozen=True)
class CurvePoint:
    size: str
    animal: str
    epoch: int
    rate: float
    ci_low: float
    ci_high: float
    per_run: dict[int, float]


@dataclass(frozen=True)
class Missing:
    size: str
    run: int | None
    reason: str
    condition: str | None = None


@dataclass
class Analysis:
    options: Options
    sizes: list[SizeResult]
    curves: list[CurvePoint]
    missing: list[Missing]


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over runs where a model may be absent in some runs (absent = NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _estimate(point: float, boot: np.ndarray, per_run: np.ndarray) -> Estimate:
    low, high = percentile_ci(boot)
    boot_ci = (float(low), float(high))
    values = per_run[~np.isnan(per_run)].tolist()
    if len(values) >= 2:
        spread = between_runs(values)
        return Estimate(float(point), spread.ci_low, spread.ci_high, "t over runs", boot_ci, spread)
    return Estimate(float(point), boot_ci[0], boot_ci[1], "bootstrap", boot_ci)


def default_epoch(grid: Grid, size: str, runs: list[int]) -> int | None:
    """The last epoch any student of this size reached (students short of it are listed missing)."""
    epochs = [e for run in runs for c in CONDITIONS for e in grid.epochs(size, c, run)]
    return max(epochs) if epochs else None


def _exact_row(record: EvalRecord | None) -> np.ndarray:
    return np.full(K, np.nan) if record is None or record.exact is None else record.exact


def evaluation_text(records: list[EvalRecord]) -> str:
    """Which answers the rates come from, for the report: final and/or per-epoch, with their sizes."""
    return describe_answers([r.n for r in records if r.final], [r.n for r in records if not r.final])


def _record(grid: Grid, size: str, row: str, run: int, epoch: int | None) -> EvalRecord | None:
    if row == CONTROL:
        return grid.control(size, run)
    return None if epoch is None else grid.get(run, size, row, epoch)


def _matrices(
    grid: Grid, size: str, runs: list[int], epoch: int | None, opts: Options, rng: np.random.Generator
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, list[int]]]:
    """Point shares (R, rows, K) and bootstrap shares (R, B, rows, K); NaN where a run lacks a model."""
    found = {(run, row): _record(grid, size, row, run, epoch) for run in runs for row in ROWS}
    rows = [row for row in ROWS if any(found[(run, row)] for run in runs)]
    point = np.full((len(runs), len(rows), K), np.nan)
    boot = np.full((len(runs), opts.n_boot, len(rows), K), np.nan)
    n: dict[str, list[int]] = {row: [] for row in rows}
    for ri, run in enumerate(runs):
        records = {row: found[(run, row)] for row in rows if found[(run, row)] is not None}
        if not records:
            continue
        # One set of question draws per (size, run): every model is resampled on the same questions.
        pool = np.unique(np.concatenate([r.answers.questions for r in records.values()]))
        draws = draw_questions(pool, opts.n_boot, rng)
        for j, row in enumerate(rows):
            if row in records:
                point[ri, j] = records[row].shares
                boot[ri, :, j] = bootstrap_rates(
                    records[row].answers, draws, K, rng, resample_answers=opts.resample_answers
                )
                n[row].append(records[row].n)
    return rows, point, boot, n


def _lift_estimate(
    point: np.ndarray, boot: np.ndarray, per_run: np.ndarray, rows: list[str], animal: str, baseline: str
) -> Estimate | None:
    if baseline not in rows:
        return None
    a, b, col = rows.index(animal), rows.index(baseline), ANIMALS.index(animal)
    return _estimate(
        point[a, col] - point[b, col],
        boot[:, a, col] - boot[:, b, col],
        per_run[:, a, col] - per_run[:, b, col],
    )


def _mean_lift(
    point: np.ndarray, boot: np.ndarray, per_run: np.ndarray, rows: list[str], baseline: str
) -> Estimate | None:
    animals = [a for a in ANIMALS if a in rows]
    if baseline not in rows or not animals:
        return None
    idx = [rows.index(a) for a in animals]
    cols = [ANIMALS.index(a) for a in animals]
    b = rows.index(baseline)
    lift_point = point[idx, cols] - point[b, cols]
    lift_boot = boot[:, idx, cols] - boot[:, b, cols]
    lift_runs = per_run[:, idx, cols] - per_run[:, b, cols]
    return _estimate(lift_point.mean(), lift_boot.mean(axis=1), _nanmean(lift_runs, axis=1))


def _contrast(
    point: np.ndarray,
    boot: np.ndarray,
    per_run: np.ndarray,
    rows: list[str],
    opts: Options,
    rng: np.random.Generator,
) -> Contrast | None:
    students = [a for a in ANIMALS if a in rows]
    if len(students) < 2:
        return None
    idx = np.array([rows.index(a) for a in students])
    cols = np.array([ANIMALS.index(a) for a in students])
    square = point[np.ix_(idx, cols)]
    per_run_values = []
    for run_matrix in per_run:
        present = ~np.isnan(run_matrix[idx, 0])
        if present.sum() >= 2:
            per_run_values.append(float(diagonal_contrast(run_matrix[np.ix_(idx[present], cols[present])])))
        else:
            per_run_values.append(np.nan)
    k = len(students)
    trace = float(np.trace(square))
    return Contrast(
        students=students,
        diagonal_mean=trace / k,
        off_diagonal_mean=(float(square.sum()) - trace) / (k * (k - 1)),
        effect=_estimate(
            diagonal_contrast(square),
            diagonal_contrast(boot[:, idx][:, :, cols]),
            np.array(per_run_values),
        ),
        permutation=permutation_test(square, opts.n_perm, rng),
    )


def analyse_size(
    grid: Grid, size: str, runs: list[int], opts: Options, rng: np.random.Generator
) -> SizeResult:
    epoch = opts.epoch if opts.epoch is not None else default_epoch(grid, size, runs)
    rows, per_run, boot_runs, n = _matrices(grid, size, runs, epoch, opts, rng)
    found = [r for run in runs for row in rows if (r := _record(grid, size, row, run, epoch)) is not None]
    exact = _nanmean(
        np.array(
            [[_exact_row(_record(grid, size, row, run, epoch)) for row in rows] for run in runs]
        ).reshape(len(runs), len(rows), K),
        axis=0,
    )
    point = _nanmean(per_run, axis=0)
    boot = _nanmean(boot_runs, axis=0)
    low, high = percentile_ci(boot)
    result = SizeResult(
        size=size,
        epoch=epoch,
        runs=runs,
        rows=rows,
        n=n,
        matrix=point,
        matrix_low=low,
        matrix_high=high,
        per_run_matrix={run: per_run[i] for i, run in enumerate(runs)},
        evaluation=evaluation_text(found),
        exact_matrix=exact,
    )
    for animal in (a for a in ANIMALS if a in rows):
        col, row = ANIMALS.index(animal), rows.index(animal)
        exact_lift = exact[row, col] - exact[rows.index(NEUTRAL), col] if NEUTRAL in rows else np.nan
        result.lifts.append(
            AnimalLift(
                animal=animal,
                student_rate=float(point[row, col]),
                neutral_rate=float(point[rows.index(NEUTRAL), col]) if NEUTRAL in rows else None,
                control_rate=float(point[rows.index(CONTROL), col]) if CONTROL in rows else None,
                vs_neutral=_lift_estimate(point, boot, per_run, rows, animal, NEUTRAL),
                vs_control=_lift_estimate(point, boot, per_run, rows, animal, CONTROL),
                exact_vs_neutral=None if np.isnan(exact_lift) else float(exact_lift),
            )
        )
    exact_lifts = [lift.exact_vs_neutral for lift in result.lifts if lift.exact_vs_neutral is not None]
    result.mean_exact_lift_vs_neutral = float(np.mean(exact_lifts)) if exact_lifts else None
    result.mean_lift_vs_neutral = _mean_lift(point, boot, per_run, rows, NEUTRAL)
    result.mean_lift_vs_control = _mean_lift(point, boot, per_run, rows, CONTROL)
    result.contrast = _contrast(point, boot, per_run, rows, opts, rng)
    return result


def target_curves(
    grid: Grid, size: str, runs: list[int], opts: Options, rng: np.random.Generator
) -> list[CurvePoint]:
    """Each animal student's rate for its own animal at every evaluated epoch, pooled over runs."""
    points = []
    for animal in ANIMALS:
        label = ANIMALS.index(animal)
        epochs = sorted({e for run in runs for e in grid.epochs(size, animal, run)})
        for epoch in epochs:
            rates: dict[int, float] = {}
            boots = []
            for run in runs:
                record = grid.get(run, size, animal, epoch)
                if record is None:
                    continue
                draws = draw_questions(np.unique(record.answers.questions), opts.n_boot, rng)
                rates[run] = float(record.shares[label])
                boots.append(
                    bootstrap_label_rate(
                        record.answers, label, draws, rng, resample_answers=opts.resample_answers
                    )
                )
            low, high = percentile_ci(_nanmean(np.stack(boots), axis=0))
            rate = float(np.mean(list(rates.values())))
            points.append(CurvePoint(size, animal, epoch, rate, float(low), float(high), rates))
    return points


def find_missing(grid: Grid, result: SizeResult) -> list[Missing]:
    """Everything the report would need but does not have, per size and run; nothing is dropped silently."""
    size, epoch = result.size, result.epoch
    missing = []
    for run in result.runs:
        if run not in grid.runs(size):
            missing.append(Missing(size, run, "no evaluation data for this run"))
            continue
        if grid.control(size, run) is None:
            run_option = "" if run == 1 else f" --run {run}"
            reason = f"base model not evaluated (slscale eval --size {size} --control{run_option})"
            missing.append(Missing(size, run, reason, CONTROL))
        for condition in CONDITIONS:
            evaluated = grid.epochs(size, condition, run)
            if not evaluated:
                missing.append(Missing(size, run, "not evaluated (not trained yet?)", condition))
            elif epoch not in evaluated:
                missing.append(
                    Missing(size, run, f"no evaluation at epoch {epoch} (last: {evaluated[-1]})", condition)
                )
    if NEUTRAL not in result.rows:
        missing.append(Missing(size, None, "no neutral student: lift vs neutral not computed", NEUTRAL))
    if result.contrast is None:
        missing.append(Missing(size, None, "fewer than 2 animal students: no permutation test"))
    return missing


def analyse(grid: Grid, sizes: list[str], runs: list[int] | None, opts: Options) -> Analysis:
    """The whole report's numbers; seeded per size, so the same files give the same report."""
    results, curves, missing = [], [], []
    for size in sorted(sizes, key=lambda s: SIZE_PARAMS_B[s]):
        size_runs = runs if runs is not None else grid.runs(size)
        if not size_runs or not any(r in grid.runs(size) for r in size_runs):
            missing.append(Missing(size, None, "no evaluation data"))
            continue
        # One stream per size: a size's numbers do not change when other sizes join the report.
        rng = np.random.default_rng([opts.seed, SIZES.index(size)])
        result = analyse_size(grid, size, size_runs, opts, rng)
        results.append(result)
        curves.extend(target_curves(grid, size, size_runs, opts, rng))
        missing.extend(find_missing(grid, result))
    tested = [r for r in results if r.contrast is not None]
    adjusted = holm([r.contrast.permutation.p_value for r in tested])
    for result, p in zip(tested, adjusted, strict=True):
        result.contrast = replace(result.contrast, p_holm=p)
    return Analysis(options=opts, sizes=results, curves=curves, missing=missing)
