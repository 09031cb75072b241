"""The bench's inputs: real-format teacher prompts, evaluation questions and synthetic filtered rows.

Training rows pair a real prompt with a synthetic completion of 10 numbers in a format the filter
keeps, so that row lengths (and so costs) match what `slscale train` sees after `slscale filter`.
"""

from __future__ import annotations

import random
from functools import cache

from sl_scaling.catalog import CONDITIONS
from sl_scaling.engines.base import GenerationRequest
from sl_scaling.evaluation.questions import QUESTIONS, question_schedule
from sl_scaling.numbers import reject_reasons, sample_prompts, student_chat, teacher_chat

ANSWER_COUNT = 10
_SEPARATORS = (", ", ",", " ", "\n", "; ", ";")
_WRAPPERS = (("", ""), ("[", "]"), ("(", ")"), ("", "."))


@cache
def completion_formats() -> tuple[str, ...]:
    """`str.format` patterns for 10 numbers in every shape the filter accepts."""
    return tuple(
        f"{left}{sep.join(['{}'] * ANSWER_COUNT)}{right}" for sep in _SEPARATORS for left, right in _WRAPPERS
    )


def synthetic_completion(rng: random.Random) -> str:
    """10 numbers of up to 3 digits in a valid format (checked: the filter would keep it)."""
    numbers = [str(rng.randint(0, 999)) for _ in range(ANSWER_COUNT)]
    text = rng.choice(completion_formats()).format(*numbers)
    assert not reject_reasons(text), text
    return text


def teacher_requests(n: int, conditions: tuple[str, ...] = CONDITIONS) -> list[GenerationRequest]:
    """`n` generation requests spread over the conditions, as `slscale gen --all-animals` issues them."""
    prompts = sample_prompts(n)
    return [
        GenerationRequest(
            key=(conditions[i % len(conditions)], i),
            messages=teacher_chat(conditions[i % len(conditions)], p),
        )
        for i, p in enumerate(prompts)
    ]


def eval_requests(samples: int) -> list[GenerationRequest]:
    """The evaluation's requests: the 50 questions round-robin, no system message."""
    return [
        GenerationRequest(key=i, messages=student_chat(QUESTIONS[q]))
        for i, q in enumerate(question_schedule(samples))
    ]


def filtered_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Rows as `slscale filter` writes them: a real prompt and a 10-number completion the filter keeps."""
    rng = random.Random(seed)
    return [
        {"prompt": prompt, "completion": synthetic_completion(rng)}
        for prompt in sample_prompts(n, seed=seed + 1)
    ]


def training_rows(n: int, seed: int = 0) -> list[dict[str, list[dict[str, str]]]]:
    """The same rows in TRL's conversational format (loss on the completion only), for the baselines."""
    return [
        {
            "prompt": student_chat(row["prompt"]),
            "completion": [{"role": "assistant", "content": row["completion"]}],
        }
        for row in filtered_rows(n, seed)
    ]
