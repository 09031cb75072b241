"""The experiment's grid (EXPERIMENT.md): the stage names and how much work a stage does per size.

One home for these, so that the pipeline's plan, the state DB, `status`, the time projection and the
CLI defaults cannot disagree about what a full run is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sl_scaling.catalog import TINY

GEN, FILTER, TRAIN, EVAL, PLOT = "gen", "filter", "train", "eval", "plot"
#: Stages that keep a row per job in the state DB, in pipeline order.
STAGES: tuple[str, ...] = (GEN, FILTER, TRAIN, EVAL)
#: The stages a fine-tuning condition goes through; the control (the base model) is only evaluated.
CONDITION_STAGES: tuple[str, ...] = (GEN, FILTER, TRAIN)
CONTROL_STAGES: tuple[str, ...] = (EVAL,)
#: The stage whose output a stage reads.
PREVIOUS: dict[str, str] = {FILTER: GEN, TRAIN: FILTER}

#: Generated rows (prompts) per condition.
PROMPTS = 30_000
#: Rows the filter keeps at most (a seeded random subsample above it): one epoch's data.
TRAIN_ROWS = 10_000
EPOCHS = 10
#: Answers per evaluation after every epoch (2 per question), and in the final evaluation of the last epoch
#: and the control (100 per question, as the paper): at a 5% rate their 95% intervals are ±4.5 and ±0.6 points.
EVAL_SAMPLES = 100
FINAL_EVAL_SAMPLES = 5_000


@dataclass(frozen=True)
class SizeSettings:
    """Work per size; `tiny` gets small defaults so the whole pipeline runs on a laptop CPU in minutes."""

    n: int
    epochs: int
    samples: int
    final_samples: int  # the final evaluation of the last epoch and the control (0: none)
    #: Peak learning rate; None: EXPERIMENT.md's 2e-4.
    lr: float | None = None


FULL = SizeSettings(n=PROMPTS, epochs=EPOCHS, samples=EVAL_SAMPLES, final_samples=FINAL_EVAL_SAMPLES)
#: `tiny` makes no scientific claim: a smaller final evaluation keeps its demo and tests quick. Its
#: learning rate is tiny-only: at 2e-4 the ~10 optimizer steps of a tiny student leave it where it
#: started and 16 identical students read as a bug; at 5e-3 only 5 of 16 students' answers differed
#: (common evaluation seeds); at 2e-2 all 16 students' exact preferences and final 500-answer evaluations
#: differ from each other and from the control (the 50-answer per-epoch lists, on shared seeds, still
#: coincide for some: 5 distinct lists of 16 in a full tiny run).
TINY_DEFAULTS = SizeSettings(n=300, epochs=2, samples=50, final_samples=500, lr=2e-2)


def defaults_for(size: str) -> SizeSettings:
    return TINY_DEFAULTS if size == TINY else FULL


def settings_for(
    size: str,
    *,
    n: int | None = None,
    epochs: int | None = None,
    samples: int | None = None,
    final_samples: int | None = None,
    lr: float | None = None,
) -> SizeSettings:
    """The size's defaults with what the user chose instead (None: the default): every command that
    takes these options resolves them here, so `slscale gen`/`train` on `tiny` do what `run` does."""
    base = defaults_for(size)
    return SizeSettings(
        n=n or base.n,
        epochs=epochs or base.epochs,
        samples=samples or base.samples,
        final_samples=base.final_samples if final_samples is None else final_samples,
        lr=lr or base.lr,
    )
