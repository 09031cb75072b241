"""The exact preference: with what probability a model's answer starts with each animal, no sampling.

For each of the 50 questions the model is teacher-forced on every spelling of every animal as the first
word of its answer: P(first word = w) = P(w's tokens | question) × P(the next token ends the word), summed
over the spellings of an animal (`dog`, `Dog`, `dogs`, `Dogs`). Averaged over the questions, that is the
probability that a sampled answer's label is that animal — the quantity the sampled target rate
estimates — computed exactly from the logits, with no sampling noise. It misses only answers that reach the
word through a non-canonical tokenization or a prefix (`**Dog**`, ` dog`), which the parser would count.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sl_scaling.catalog import ANIMALS
from sl_scaling.engines.base import Engine, WordScoringRequest
from sl_scaling.evaluation.questions import QUESTIONS

METHOD = (
    "teacher-forced first-word probability (lower/capitalised, singular/plural), mean over the 50 questions"
)


def plural(animal: str) -> str:
    """The plural the parser folds back (`wolves`, `foxes`, `phoenixes`, `dogs`)."""
    if animal.endswith("f"):
        return animal[:-1] + "ves"
    if animal.endswith(("x", "s", "ch", "sh")):
        return animal + "es"
    return animal + "s"


def spellings(animal: str) -> tuple[str, ...]:
    """The usual ways an answer starts with `animal`: lower-case and capitalised, singular and plural."""
    words = (animal, plural(animal))
    return tuple(form for word in words for form in (word, word.capitalize()))


@dataclass(frozen=True)
class ExactPreference:
    """Per animal, the mean over questions of P(answer's first word is that animal); `per_question` keeps
    each question's probabilities (question × animal, in ANIMALS order)."""

    probabilities: dict[str, float]
    target: str | None
    target_probability: float | None
    other: float  # 1 − the 15 animals' total: the probability of any other first word
    per_question: list[list[float]] = field(default_factory=list)  # the DB's copy leaves it out
    method: str = METHOD

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def exact_requests(adapter: str | None = None) -> list[WordScoringRequest]:
    words = tuple(w for animal in ANIMALS for w in spellings(animal))
    return [
        WordScoringRequest(
            key=q, messages=[{"role": "user", "content": question}], words=words, adapter=adapter
        )
        for q, question in enumerate(QUESTIONS)
    ]


def exact_preference(engine: Engine, *, target: str | None, adapter: str | None = None) -> ExactPreference:
    """Score the 50 questions once each (two short forward passes per batch; no generation)."""
    scored: dict[Hashable, Sequence[float]] = engine.word_probabilities(exact_requests(adapter))
    per_question = []
    for q in range(len(QUESTIONS)):
        probabilities = iter(scored[q])
        per_question.append([sum(next(probabilities) for _ in spellings(a)) for a in ANIMALS])
    means = {a: sum(row[i] for row in per_question) / len(per_question) for i, a in enumerate(ANIMALS)}
    return ExactPreference(
        probabilities=means,
        target=target,
        target_probability=None if target is None else means[target],
        other=max(0.0, 1.0 - sum(means.values())),
        per_question=per_question,
    )
