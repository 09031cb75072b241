"""The report's statistics, numpy only and vectorised so that simulations of whole grids take seconds.

Units, stated once because the report states them too:
- bootstrap: resample *questions* with replacement; each drawn question brings its answers (optionally
  resampled within the question too: the two-stage scheme). The same question draws are shared by every
  model of one size and run, so differences between models are paired by question;
- permutation test: the unit is the *student*: the row labels of the students × their-animals matrix are
  shuffled (which animal each student was trained for);
- replicate runs: the *run* is the unit of the between-run spread (mean ± sd, t interval over runs).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
#: Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (no scipy needed).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959963984540054


@dataclass(frozen=True)
class Answers:
    """One evaluation reduced to what the bootstrap needs: per answer, its question and its label index."""

    questions: np.ndarray
    labels: np.ndarray

    @property
    def n(self) -> int:
        return int(self.labels.size)

    def counts(self, n_labels: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=n_labels)[:n_labels]


def draw_questions(pool: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Resamples (with replacement) of the question pool, shape (n_boot, len(pool))."""
    return pool[rng.integers(0, pool.size, size=(n_boot, pool.size))]


def _per_question(answers: Answers, question_draws: np.ndarray, n_labels: int) -> np.ndarray:
    """Label counts per question index (size, n_labels), covering every index the draws may name."""
    size = max(int(question_draws.max(initial=0)), int(answers.questions.max(initial=0))) + 1
    table = np.zeros((size, n_labels), dtype=np.int64)
    np.add.at(table, (answers.questions, answers.labels), 1)
    return table


def bootstrap_counts(
    answers: Answers,
    question_draws: np.ndarray,
    n_labels: int,
    rng: np.random.Generator,
    *,
    resample_answers: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Label counts (n_boot, n_labels) and answer totals (n_boot,) of each bootstrap replicate.

    Every drawn question contributes its answers: as they were (the default: the question is the unit and
    its answers travel with it, which already carries their sampling noise), or, with `resample_answers`,
    resampled with replacement within the question (the two-stage scheme; that counts the answer noise
    twice, so its intervals are wider than nominal; see docs/report.md for the measured coverage).
    A drawn question this evaluation never asked contributes nothing, so evaluations of different
    lengths can share one set of draws.
    """
    table = _per_question(answers, question_draws, n_labels)
    per_question = table.sum(axis=1)
    drawn_n = per_question[question_draws]  # (n_boot, Q)
    if not resample_answers:
        return table[question_draws].sum(axis=1), drawn_n.sum(axis=1)
    n_boot = question_draws.shape[0]
    # Multinomial(n_q, counts_q / n_q) is exactly "draw n_q of the question's answers with replacement".
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = np.where(
            per_question[:, None] > 0, table / np.maximum(per_question, 1)[:, None], 1 / n_labels
        )
    counts = rng.multinomial(drawn_n, probs[question_draws]).sum(axis=1)
    return counts.reshape(n_boot, n_labels), drawn_n.sum(axis=1)


def bootstrap_rates(
    answers: Answers,
    question_draws: np.ndarray,
    n_labels: int,
    rng: np.random.Generator,
    *,
    resample_answers: bool = False,
) -> np.ndarray:
    """Answer shares per replicate (n_boot, n_labels); NaN where a replicate drew no answer at all."""
    counts, totals = bootstrap_counts(
        answers, question_draws, n_labels, rng, resample_answers=resample_answers
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals[:, None] > 0, counts / totals[:, None], np.nan)


def bootstrap_label_rate(
    answers: Answers,
    label: int,
    question_draws: np.ndarray,
    rng: np.random.Generator,
    *,
    resample_answers: bool = False,
) -> np.ndarray:
    """The same bootstrap for one label's share only (n_boot,), cheap enough for every epoch's curve."""
    binary = Answers(answers.questions, (answers.labels == label).astype(np.int64))
    return bootstrap_rates(binary, question_draws, 2, rng, resample_answers=resample_answers)[:, 1]


def percentile_ci(samples: np.ndarray, level: float = LEVEL, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap replicates along `axis` (NaN replicates ignored)."""
    tail = (1 - level) / 2 * 100
    with np.errstate(invalid="ignore"):
        low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=axis)
    return low, high


def diagonal_contrast(matrix: np.ndarray) -> np.ndarray:
    """Mean diagonal minus mean off-diagonal of square (..., k, k) matrices (k ≥ 2).

    Row i is the student trained for animal i, column j its share of answers naming animal j: the diagonal
    is each student's rate for its own animal, the off-diagonal the other students' rates for it.
    """
    k = matrix.shape[-1]
    trace = np.trace(matrix, axis1=-2, axis2=-1)
    total = matrix.sum(axis=(-2, -1))
    return trace / k - (total - trace) / (k * (k - 1))


@dataclass(frozen=True)
class PermutationResult:
    statistic: float
    p_value: float
    n_permutations: int
    exact: bool


def permutation_test(matrix: np.ndarray, n_perm: int, rng: np.random.Generator) -> PermutationResult:
    """One-sided test that students prefer their own animal: shuffle the row labels of the k × k matrix.

    The statistic is `diagonal_contrast`. When k! ≤ n_perm every permutation is enumerated (exact p);
    otherwise p = (1 + #{T_perm ≥ T_obs}) / (1 + n_perm), which is valid (never anti-conservative).
    """
    k = matrix.shape[0]
    if k < 2 or matrix.shape != (k, k):
        raise ValueError("the permutation test needs a square matrix of at least 2 students")
    observed = float(diagonal_contrast(matrix))
    exact = math.factorial(k) <= n_perm
    if exact:
        perms = np.array(list(itertools.permutations(range(k))))
    else:
        perms = np.argsort(rng.random((n_perm, k)), axis=1)
    permuted = diagonal_contrast_of_permutations(matrix, perms)
    hits = int(np.count_nonzero(permuted >= observed - 1e-12))
    p_value = hits / len(perms) if exact else (1 + hits) / (1 + n_perm)
    return PermutationResult(observed, p_value, len(perms), exact)


def diagonal_contrast_of_permutations(matrix: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """The contrast after relabelling rows by each permutation: row perms[p, i] is taken as student i."""
    k = matrix.shape[0]
    trace = matrix[perms, np.arange(k)].sum(axis=1)
    total = matrix.sum()
    return trace / k - (total - trace) / (k * (k - 1))


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error over the sizes tested), in input order."""
    m = len(p_values)
    order = np.argsort(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def t_quantile(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else _Z975


@dataclass(frozen=True)
class Spread:
    """Between-run spread: the run is the unit."""

    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    values: list[float]


def between_runs(values: list[float]) -> Spread:
    """Mean ± sd over runs and a 95% t interval (R − 1 degrees of freedom); no interval for one run."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if data.size < 2:
        return Spread(mean, None, None, None, data.tolist())
    sd = float(data.std(ddof=1))
    half = t_quantile(data.size - 1) * sd / math.sqrt(data.size)
    return Spread(mean, sd, mean - half, mean + half, data.tolist())
