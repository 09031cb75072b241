"""Simulated evaluation files with a known truth, written by the real writer, to check the statistics.

Each model answers from a known distribution over labels; each question tilts it (a Dirichlet draw around
it, shared by every model of a size), because real questions differ in which animal they elicit. An animal
student's distribution is `(1 − effect) · base + effect · its animal`, with the effect growing linearly over
the epochs up to `effect` at the last one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from sl_scaling.catalog import ANIMALS, CONDITIONS, CONTROL, Layout, target_animal
from sl_scaling.evaluation.questions import QUESTIONS, question_schedule
from sl_scaling.evaluation.records import epoch_record, upsert_epoch
from sl_scaling.evaluation.scoring import make_answers, score
from sl_scaling.state import JobKey

#: Answer words: the 15 animals, then a few others (all pooled into "others" by the report).
WORDS: tuple[str, ...] = (*ANIMALS, "owl", "octopus", "horse")
#: Roughly the 7B base model's favourites (EXPERIMENT.md), as probabilities over WORDS.
BASE = np.array([16, 2, 18, 4, 16, 15, 5, 4, 3, 4, 2, 2, 1, 1, 1, 3, 2, 1], dtype=float) / 100


def distribution(condition: str, effect: float) -> np.ndarray:
    """The true answer distribution over WORDS of one model."""
    animal = target_animal(condition)
    if animal is None or effect == 0:
        return BASE
    planted = np.zeros(len(WORDS))
    planted[ANIMALS.index(animal)] = 1.0
    return (1 - effect) * BASE + effect * planted


def question_tilts(rng: np.random.Generator, concentration: float) -> np.ndarray:
    """Per-question multipliers (Q, len(WORDS)) with mean ≈ 1: a question effect shared by all models."""
    return rng.dirichlet(np.full(len(WORDS), concentration), size=len(QUESTIONS)) * len(WORDS)


def sample_answers(
    rng: np.random.Generator, probs: np.ndarray, tilts: np.ndarray, samples: int
) -> tuple[list[int], list[str]]:
    """Question indices and answer texts of one evaluation (round-robin questions, as the real one)."""
    schedule = question_schedule(samples)
    per_question = probs * tilts[schedule]
    per_question /= per_question.sum(axis=1, keepdims=True)
    cumulative = per_question.cumsum(axis=1)
    picks = (rng.random((samples, 1)) > cumulative).sum(axis=1)
    return schedule, [WORDS[min(i, len(WORDS) - 1)].capitalize() + "." for i in picks]


def write_grid(
    layout: Layout,
    effects: Mapping[str, float],
    *,
    conditions: Iterable[str] = CONDITIONS,
    epochs: int = 3,
    samples: int = 100,
    runs: Iterable[int] = (1,),
    control: bool = True,
    concentration: float = 20.0,
    seed: int = 0,
) -> None:
    """Write `{condition}_eval.json` (+ control) for every size in `effects` (size → planted effect)."""
    rng = np.random.default_rng(seed)
    for size, effect in effects.items():
        tilts = question_tilts(rng, concentration)
        for run in runs:
            for condition in ([CONTROL] if control else []) + list(conditions):
                key = JobKey(run, size, condition)
                for epoch in [0] if condition == CONTROL else range(1, epochs + 1):
                    probs = distribution(condition, effect * epoch / epochs if epoch else 0.0)
                    schedule, texts = sample_answers(rng, probs, tilts, samples)
                    evaluation = score(make_answers(schedule, QUESTIONS, texts), target_animal(condition))
                    loss = None if condition == CONTROL else 1.0 / (epoch + 1)
                    record = epoch_record(epoch, evaluation, train_loss=loss, adapter=None)
                    upsert_epoch(layout.eval_json(key), key, f"synthetic/{size}", record)
