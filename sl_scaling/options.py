"""What a caller decides for a generation or an evaluation, passed whole (beside `TrainConfig` for training).

The CLI and the pipeline build one of these; the stages read it. Adding a setting is one field here and
one option in the CLI, not a parameter threaded through every function in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from sl_scaling.errors import UsageError
from sl_scaling.grid import PROMPTS
from sl_scaling.numbers.prompts import PROMPT_SEED


@dataclass(frozen=True)
class GenerationOptions:
    """Phase 1: how many prompts, from which prompt set, on which engine (`auto` is resolved by the stage).

    `prompt_seed` picks the prompt set only (42: the reference's, shared by every run); the teacher's
    sampling seed follows `run` (seeds.py)."""

    n: int = PROMPTS
    prompt_seed: int = PROMPT_SEED
    run: int = 1
    engine: str = "auto"
    max_new_tokens: int = 128
    batch_size: int | None = None
    #: GPUs vLLM shards one model over (the HF engine uses one).
    tensor_parallel_size: int = 1

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UsageError(f"--n must be at least 1 (got {self.n})")


@dataclass(frozen=True)
class EvalOptions:
    """Phase 3 standalone (the control, re-evaluating adapters): how many answers, on which engine.

    None repeats what was recorded for an epoch (training's evaluation, answer for answer); for the control
    it means EXPERIMENT.md's sizes. `final_samples` applies to the control and the last epoch (0: none)."""

    samples: int | None = None
    final_samples: int | None = None
    run: int = 1
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.samples is not None and self.samples < 1:
            raise UsageError(f"--samples must be at least 1, not {self.samples}")
        if self.final_samples is not None and self.final_samples < 0:
            raise UsageError(f"--final-samples must be 0 (none) or more, not {self.final_samples}")
