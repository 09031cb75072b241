"""Every random seed of the experiment except the prompt set's, from one function.

Replicate runs are the statistical unit of `slscale report`, so they must be independent: run 2 gets its
own teacher samples, LoRA initialisation, data order and evaluation draws. The prompt set is the one thing
every run shares: the reference generator seeded with `numbers.prompts.PROMPT_SEED` (42), so datasets stay comparable with
the paper's. The 10k subsample of the filter keeps the reference's fixed `numbers.filtering.SUBSAMPLE_SEED`
(1, recorded in the filter stage's counts): it draws from each run's own completions, so runs stay independent. Everything else is `derive_seed(purpose, run=…, size=…, condition=…, epoch=…)`: a hash, so
no two purposes, runs or sizes can share a seed by accident and nothing depends on the order jobs run in.

Within one run some seeds are deliberately shared by every condition (`ALL_CONDITIONS`), as common random
numbers: the students of a run and size start from the same LoRA initialisation and see their rows in
the same shuffled order, and at each epoch all of them (and the control, as epoch 0) answer with the same
sampling draws. A difference between two students of a run then comes from their data, not from luck.
Across runs nothing is shared.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

#: The `condition` of a seed shared by every condition of a run and size (common random numbers).
ALL_CONDITIONS = "*"


class Purpose(StrEnum):
    """What a seed drives."""

    TEACHER = "teacher"  # teacher sampling in `gen`; each row's draw is further keyed by (condition, index)
    TRAIN = "train"  # LoRA initialisation and the order of rows in every epoch
    EVAL = "eval"  # sampling of the per-epoch evaluation (and of the control, as epoch 0)
    FINAL_EVAL = "final-eval"  # sampling of the final, larger evaluation of the last epoch and the control


def derive_seed(
    purpose: Purpose, *, run: int, size: str, condition: str = ALL_CONDITIONS, epoch: int | None = None
) -> int:
    """A 31-bit seed from (purpose, run, size, condition, epoch): fits every RNG we hand it to."""
    text = f"slscale-seed/v1|{purpose.value}|run={run}|size={size}|condition={condition}|epoch={epoch}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def teacher_seed(run: int, size: str) -> int:
    """Teacher sampling for a size's pass (the engines mix each row's (condition, index) into it)."""
    return derive_seed(Purpose.TEACHER, run=run, size=size)


def train_seed(run: int, size: str) -> int:
    """LoRA initialisation and data order, shared by the students of one run and size."""
    return derive_seed(Purpose.TRAIN, run=run, size=size)


def eval_seed(run: int, size: str, epoch: int, *, final: bool = False) -> int:
    """Evaluation sampling at `epoch` (0 = the control), shared by every model of the run and size."""
    purpose = Purpose.FINAL_EVAL if final else Purpose.EVAL
    return derive_seed(purpose, run=run, size=size, epoch=None if final else epoch)
