"""Ask one model (or one adapter on it) the 50 questions and score the answers; score its exact preference."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from sl_scaling.engines.base import Engine, GenerationRequest, Sampling
from sl_scaling.evaluation.exact import exact_preference
from sl_scaling.evaluation.questions import QUESTIONS, question_schedule
from sl_scaling.evaluation.scoring import Evaluation, make_answers, score
from sl_scaling.seeds import eval_seed

#: Answers are one word; a short cap keeps evaluation cheap (a few tokens for "Dolphin.").
EVAL_MAX_NEW_TOKENS = 16
EVAL_TEMPERATURE = 1.0


@dataclass(frozen=True)
class EvalPlan:
    """One model's evaluation at one epoch: the sampled answers, the exact preference and, for a last epoch
    or the control, the final evaluation. Training and `slscale eval` build it the same way (seeds.py), so a
    re-evaluation repeats what training recorded."""

    samples: int
    seed: int
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS
    final_samples: int = 0  # 0: no final evaluation
    final_seed: int | None = None

    @classmethod
    def at_epoch(
        cls,
        run: int,
        size: str,
        epoch: int,
        *,
        samples: int,
        max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
        final_samples: int = 0,
    ) -> EvalPlan:
        return cls(
            samples=samples,
            seed=eval_seed(run, size, epoch),
            max_new_tokens=max_new_tokens,
            final_samples=final_samples,
            final_seed=eval_seed(run, size, epoch, final=True) if final_samples else None,
        )

    @property
    def answers(self) -> int:
        return self.samples + self.final_samples


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
    seed: int,
    adapter: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Sample `samples` answers at temperature 1 and score them against `target` (None: control/neutral).

    `seed` is `seeds.eval_seed(...)`: the same seed, engine and requests give the same answers.
    """
    requests = question_requests(samples, adapter)
    texts: dict[Hashable, str] = {}
    sampling = Sampling(temperature=EVAL_TEMPERATURE, max_new_tokens=max_new_tokens, seed=seed)
    for batch in engine.generate(requests, sampling):
        texts.update((g.key, g.text) for g in batch)
        if on_progress is not None:
            on_progress(len(texts))
    answers = make_answers(question_schedule(samples), QUESTIONS, [texts[i] for i in range(samples)])
    return replace(score(answers, target), seed=seed, engine=engine.name, max_new_tokens=max_new_tokens)


def evaluate_model(
    engine: Engine,
    plan: EvalPlan,
    *,
    target: str | None,
    adapter: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """The sampled evaluation with the exact preference beside it, and the final evaluation if planned."""

    def progress(offset: int) -> Callable[[int], None] | None:
        return None if on_progress is None else lambda done: on_progress(offset + done)

    evaluation = evaluate(
        engine, target=target, samples=plan.samples, max_new_tokens=plan.max_new_tokens, seed=plan.seed,
        adapter=adapter, on_progress=progress(0),
    )  # fmt: skip
    evaluation.exact = exact_preference(engine, target=target, adapter=adapter)
    if plan.final_samples and plan.final_seed is not None:
        evaluation.final = evaluate(
            engine, target=target, samples=plan.final_samples, max_new_tokens=plan.max_new_tokens,
            seed=plan.final_seed, adapter=adapter, on_progress=progress(plan.samples),
        )  # fmt: skip
    return evaluation
