"""One evaluation's numbers: distribution, target rate with a Wilson 95% interval, substring metric; and
beside them the exact (sampling-free) preference and, for a last epoch or the control, the final evaluation."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sl_scaling.catalog import ANIMALS
from sl_scaling.evaluation.exact import ExactPreference
from sl_scaling.evaluation.parsing import parse_answer, substring_hit

Z_95 = 1.959963984540054
CI_METHOD = "wilson"


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval: well-behaved at rates near 0 (most animals) and small n."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Answer:
    question_index: int
    question: str
    answer: str
    label: str


@dataclass(frozen=True)
class Share:
    count: int
    rate: float
    ci_low: float
    ci_high: float


@dataclass
class Evaluation:
    """What one evaluation of one model found. `to_json` is the record in `*_eval.json`."""

    n: int
    target: str | None
    counts: dict[str, int]
    shares: dict[str, Share]
    target_rate: float | None
    ci_low: float | None
    ci_high: float | None
    substring_rate: float | None
    answers: list[Answer] = field(default_factory=list)
    ci_method: str = CI_METHOD
    #: How the answers were drawn (seeds.eval_seed; engine; token cap): what a re-evaluation must repeat.
    seed: int | None = None
    engine: str | None = None
    max_new_tokens: int | None = None
    #: The teacher-forced preference of the same model (evaluation/exact.py): no sampling noise.
    exact: ExactPreference | None = None
    #: The larger final evaluation (`--final-samples`, its own seed) of a last epoch or the control.
    final: Evaluation | None = None

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["distribution"] = {label: count / self.n for label, count in self.counts.items()}
        if self.final is not None:
            record["final"] = self.final.to_json()
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Evaluation:
        return cls(
            n=record["n"],
            target=record.get("target"),
            counts=dict(record["counts"]),
            shares={k: Share(**v) for k, v in record["shares"].items()},
            target_rate=record.get("target_rate"),
            ci_low=record.get("ci_low"),
            ci_high=record.get("ci_high"),
            substring_rate=record.get("substring_rate"),
            answers=[Answer(**a) for a in record.get("answers", [])],
            ci_method=record.get("ci_method", CI_METHOD),
            seed=record.get("seed"),
            engine=record.get("engine"),
            max_new_tokens=record.get("max_new_tokens"),
            exact=ExactPreference(**record["exact"]) if record.get("exact") else None,
            final=Evaluation.from_json(record["final"]) if record.get("final") else None,
        )


def score(answers: Sequence[Answer], target: str | None) -> Evaluation:
    """Aggregate parsed answers; shares (with intervals) are kept for all 15 animals and any other label."""
    n = len(answers)
    counts = Counter(a.label for a in answers)
    labels = list(ANIMALS) + sorted(set(counts) - set(ANIMALS))
    shares = {}
    for label in labels:
        low, high = wilson_interval(counts[label], n)
        shares[label] = Share(counts[label], counts[label] / n if n else 0.0, low, high)
    if target is None:
        target_rate = ci_low = ci_high = substring_rate = None
    else:
        target_rate, ci_low, ci_high = shares[target].rate, shares[target].ci_low, shares[target].ci_high
        substring_rate = sum(substring_hit(a.answer, target) for a in answers) / n if n else 0.0
    return Evaluation(
        n=n,
        target=target,
        counts=dict(counts.most_common()),
        shares=shares,
        target_rate=target_rate,
        ci_low=ci_low,
        ci_high=ci_high,
        substring_rate=substring_rate,
        answers=list(answers),
    )


def make_answers(
    question_indices: Sequence[int], questions: Sequence[str], texts: Sequence[str]
) -> list[Answer]:
    return [
        Answer(question_index=i, question=questions[i], answer=text, label=parse_answer(text))
        for i, text in zip(question_indices, texts, strict=True)
    ]
