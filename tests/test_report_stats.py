"""The report's statistics on simulated evaluations with a known truth (all seeded, all vectorised)."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_report import BASE, write_grid

from sl_scaling.catalog import ANIMALS, CONTROL, NEUTRAL, Layout
from sl_scaling.report.analysis import Options, analyse
from sl_scaling.report.data import LABELS, load_grid
from sl_scaling.report.stats import (
    Answers,
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


def _true_labels_distribution(probs_over_words: np.ndarray) -> np.ndarray:
    """Fold the simulator's words into the report's labels (animals + others)."""
    folded = np.zeros(K)
    folded[: len(ANIMALS)] = probs_over_words[: len(ANIMALS)]
    folded[-1] = probs_over_words[len(ANIMALS) :].sum()
    return folded


def _simulate(rng: np.random.Generator, probs: np.ndarray, tilts: np.ndarray, per_question: int) -> Answers:
    """Answers to every question `per_question` times from a per-question tilted distribution."""
    q = np.repeat(np.arange(tilts.shape[0]), per_question)
    p = probs * tilts[q]
    p /= p.sum(axis=1, keepdims=True)
    labels = (rng.random((q.size, 1)) > p.cumsum(axis=1)).sum(axis=1)
    return Answers(questions=q, labels=np.minimum(labels, K - 1))


# --- a planted effect is found where it was planted, and only there ----------------------------------------


def test_planted_effect_is_found_at_those_sizes_and_not_at_others(workdir):
    layout = Layout(workdir)
    effects = {"0.5b": 0.0, "1.5b": 0.0, "7b": 0.2, "32b": 0.3}
    write_grid(layout, effects, epochs=2, samples=100, seed=7)

    analysis = analyse(load_grid(layout, list(effects)), list(effects), None, Options(n_perm=2000))

    by_size = {r.size: r for r in analysis.sizes}
    assert set(by_size) == set(effects)
    for size, effect in effects.items():
        result = by_size[size]
        contrast, lift = result.contrast, result.mean_lift_vs_neutral
        assert result.epoch == 2 and len(result.lifts) == 15 and contrast is not None and lift is not None
        true_mean_lift = effect * (1 - BASE[: len(ANIMALS)].mean())
        if effect:
            assert contrast.p_holm < 0.01
            assert lift.ci_low > 0
            assert lift.ci_low - 0.03 <= true_mean_lift <= lift.ci_high + 0.03
        else:
            assert contrast.permutation.p_value > 0.05
            assert lift.ci_low < 0 < lift.ci_high
            assert contrast.effect.ci_low < 0 < contrast.effect.ci_high
    # Lift is defined against the neutral student and the control, both present here.
    dog = next(lift for lift in by_size["32b"].lifts if lift.animal == "dog")
    rows = by_size["32b"].rows
    assert dog.vs_neutral.value == pytest.approx(
        by_size["32b"].matrix[rows.index("dog"), 0] - by_size["32b"].matrix[rows.index(NEUTRAL), 0]
    )
    assert dog.vs_control.value == pytest.approx(
        by_size["32b"].matrix[rows.index("dog"), 0] - by_size["32b"].matrix[rows.index(CONTROL), 0]
    )
    assert analysis.missing == []


# --- the permutation test keeps its level ----------------------------------------------------------------


def test_permutation_test_false_positive_rate_under_no_effect_is_near_nominal():
    """200 null grids: 15 students, each with its own (random) answer distribution unrelated to its label."""
    rng = np.random.default_rng(2024)
    sims, students, answers = 200, 15, 100
    probs = rng.dirichlet(np.full(K, 2.0) + 20 * _true_labels_distribution(BASE), size=(sims, students))
    counts = rng.multinomial(answers, probs)
    shares = counts / answers
    p_values = np.array(
        [permutation_test(shares[s, :, : len(ANIMALS)], 2000, rng).p_value for s in range(sims)]
    )
    false_positive_rate = float(np.mean(p_values < 0.05))
    assert false_positive_rate <= 0.07
    # Under the null the p-values are spread over (0, 1], not piled at either end.
    assert 0.3 < float(np.median(p_values)) < 0.7


def test_permutation_test_detects_a_modest_planted_effect():
    rng = np.random.default_rng(5)
    base = _true_labels_distribution(BASE)
    planted = np.array([0.85 * base + 0.15 * np.eye(K)[i] for i in range(15)])
    shares = rng.multinomial(100, planted) / 100
    result = permutation_test(shares[:, :15], 2000, rng)
    assert result.p_value < 0.01 and not result.exact and result.n_permutations == 2000


def test_permutation_test_is_exact_for_few_students():
    matrix = np.array([[0.5, 0.1, 0.1], [0.1, 0.5, 0.1], [0.1, 0.1, 0.5]])
    result = permutation_test(matrix, 2000, np.random.default_rng(0))
    assert result.exact and result.n_permutations == 6
    assert result.p_value == pytest.approx(1 / 6)  # only the identity reaches the observed contrast
    assert result.statistic == pytest.approx(0.4)
    with pytest.raises(ValueError):
        permutation_test(np.ones((1, 1)), 100, np.random.default_rng(0))


# --- bootstrap intervals cover the truth at about their nominal rate ----------------------------------------


def _population_means() -> dict[tuple[str, int], float]:
    """Population mean rate of label 0 under the tilt model (not exactly the untilted rate), by Monte Carlo."""
    rng = np.random.default_rng(99)
    neutral = _true_labels_distribution(BASE)
    student = 0.9 * neutral + 0.1 * np.eye(K)[0]
    tilts = rng.dirichlet(np.full(K, 30.0), size=400_000) * K
    means = {}
    for name, probs in (("student", student), ("neutral", neutral)):
        p = probs * tilts
        means[(name, 0)] = float((p[:, 0] / p.sum(axis=1)).mean())
    return means


TRUE_TILTED = _population_means()


@pytest.mark.parametrize(
    ("resample_answers", "per_question", "expected"),
    [(False, 2, (0.90, 0.99)), (False, 6, (0.90, 0.99)), (True, 2, (0.93, 1.0))],
    ids=["questions-2-per-question", "questions-6-per-question", "two-stage-is-conservative"],
)
def test_bootstrap_intervals_cover_true_rate_and_lift(resample_answers, per_question, expected):
    """Questions are drawn from a population (Dirichlet tilts around the truth), answers from each question.

    The truth is the population mean: the animal's rate, and the lift of a student over a neutral model
    answering the same questions. The default scheme is near nominal; the two-stage one never undercovers.
    """
    rng = np.random.default_rng(11)
    sims, n_questions, n_boot = 300, 50, 500
    neutral = _true_labels_distribution(BASE)
    student = 0.9 * neutral + 0.1 * np.eye(K)[0]
    true_rate = TRUE_TILTED[("student", 0)]
    true_lift = true_rate - TRUE_TILTED[("neutral", 0)]
    covered_rate, covered_lift = 0, 0
    for _ in range(sims):
        tilts = rng.dirichlet(np.full(K, 30.0), size=n_questions) * K
        a = _simulate(rng, student, tilts, per_question)
        b = _simulate(rng, neutral, tilts, per_question)
        draws = draw_questions(np.arange(n_questions), n_boot, rng)
        rate_boot = bootstrap_rates(a, draws, K, rng, resample_answers=resample_answers)[:, 0]
        lift_boot = rate_boot - bootstrap_rates(b, draws, K, rng, resample_answers=resample_answers)[:, 0]
        low, high = percentile_ci(rate_boot)
        covered_rate += low <= true_rate <= high
        low, high = percentile_ci(lift_boot)
        covered_lift += low <= true_lift <= high
    assert expected[0] <= covered_rate / sims <= expected[1]
    assert expected[0] <= covered_lift / sims <= expected[1]


def test_label_bootstrap_matches_the_full_bootstrap():
    """The one-label bootstrap used for the epoch curves gives the same replicates (or, two-stage, the same
    distribution) as the full one."""
    rng = np.random.default_rng(3)
    tilts = rng.dirichlet(np.full(K, 10.0), size=50) * K
    answers = _simulate(rng, _true_labels_distribution(BASE), tilts, 4)
    draws = draw_questions(np.arange(50), 20_000, rng)
    np.testing.assert_allclose(
        bootstrap_rates(answers, draws, K, rng)[:, 2], bootstrap_label_rate(answers, 2, draws, rng)
    )
    full = bootstrap_rates(answers, draws, K, rng, resample_answers=True)[:, 2]
    short = bootstrap_label_rate(answers, 2, draws, rng, resample_answers=True)
    assert full.mean() == pytest.approx(short.mean(), abs=0.002)
    assert full.std() == pytest.approx(short.std(), rel=0.05)
    # Resampling answers again within questions widens the distribution.
    assert full.std() > bootstrap_rates(answers, draws, K, rng)[:, 2].std()


def test_bootstrap_handles_questions_a_model_was_not_asked():
    """A shorter evaluation shares the question draws of a longer one; absent questions add nothing."""
    rng = np.random.default_rng(0)
    answers = Answers(questions=np.array([0, 0, 1, 1]), labels=np.array([0, 1, 0, 0]))
    draws = draw_questions(np.arange(10), 500, rng)
    rates = bootstrap_rates(answers, draws, K, rng)
    asked = np.isin(draws, [0, 1]).any(axis=1)
    assert np.isnan(rates[~asked]).all() and not np.isnan(rates[asked]).any()
    np.testing.assert_allclose(rates[asked].sum(axis=1), 1.0)
    # Question 1's answers are both label 0, question 0's are half and half.
    only_q1 = (draws == 1).any(axis=1) & ~(draws == 0).any(axis=1)
    assert (rates[only_q1, 0] == 1.0).all()


# --- small pure pieces --------------------------------------------------------------------------------------


def test_diagonal_contrast_vectorises_over_replicates():
    m = np.array([[0.4, 0.1], [0.2, 0.3]])
    assert diagonal_contrast(m) == pytest.approx(0.35 - 0.15)
    assert diagonal_contrast(np.stack([m, m.T])).tolist() == pytest.approx([0.2, 0.2])


def test_holm_adjusts_in_input_order_and_stays_monotone():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.5]) == [0.5]


def test_between_runs_uses_a_t_interval_with_r_minus_1_degrees_of_freedom():
    spread = between_runs([0.1, 0.2, 0.15])
    assert spread.mean == pytest.approx(0.15) and spread.sd == pytest.approx(0.05)
    assert spread.ci_high - spread.mean == pytest.approx(4.303 * 0.05 / np.sqrt(3))
    single = between_runs([0.2])
    assert single.sd is None and single.ci_low is None and single.values == [0.2]


def test_replicate_runs_make_the_run_the_unit(workdir):
    layout = Layout(workdir)
    write_grid(layout, {"7b": 0.2}, epochs=1, runs=(1, 2, 3), seed=4)
    analysis = analyse(load_grid(layout, ["7b"]), ["7b"], None, Options(n_boot=500, n_perm=2000))
    (result,) = analysis.sizes
    lift = result.mean_lift_vs_neutral
    assert result.runs == [1, 2, 3]
    assert lift.ci_method == "t over runs" and lift.runs is not None and len(lift.runs.values) == 3
    assert lift.value == pytest.approx(np.mean(lift.runs.values))
    assert lift.ci_low < lift.value < lift.ci_high
    assert result.contrast.effect.ci_method == "t over runs"
    # The pooled matrix is the mean of the runs' matrices.
    np.testing.assert_allclose(result.matrix, np.mean([m for m in result.per_run_matrix.values()], axis=0))
