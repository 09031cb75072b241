"""Ask one model (or one adapter on it) the 50 questions and score the answers."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from sl_scaling.engines.base import Engine, GenerationRequest, Sampling
from sl_scaling.evaluation.questions import QUESTIONS, question_schedule
from sl_scaling.evaluation.scoring import Evaluation, make_answers, score

#: Answers are one word; a short cap keeps evaluation cheap (a few tokens for "Dolphin.").
EVAL_MAX_NEW_TOKENS = 16
EVAL_TEMPERATURE = 1.0
EVAL_SEED = 42


def question_requests(samples: int, adapter: str | None = None) -> list[GenerationRequest]:
    """`samples` chats spread evenly over the 50 questions, each a single user turn (no system message)."""
    return [
        GenerationRequest(key=i, messages=[{"role": "user", "content": QUESTIONS[q]}], adapter=adapter)
        for i, q in enumerate(question_schedule(samples))
    ]


def evaluate(
    engine: Engine,
    *,
    target: str | None,
    samples: int,
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
    seed: int = EVAL_SEED,
    adapter: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Sample `samples` answers at temperature 1 and score them against `target` (None: control/neutral)."""
    requests = question_requests(samples, adapter)
    texts: dict[Hashable, str] = {}
    sampling = Sampling(temperature=EVAL_TEMPERATURE, max_new_tokens=max_new_tokens, seed=seed)
    for batch in engine.generate(requests, sampling):
        texts.update((g.key, g.text) for g in batch)
        if on_progress is not None:
            on_progress(len(texts))
    answers = make_answers(question_schedule(samples), QUESTIONS, [texts[i] for i in range(samples)])
    return score(answers, target)
