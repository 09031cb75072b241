"""`slscale bench`: throughput of our default paths against plain baselines, and the grid projection.

Pure parts (shapes, data, projection) import no torch so they test on CPU in milliseconds; `measure`
and `baselines` import torch/transformers/TRL lazily when a phase runs.
"""

from __future__ import annotations

from typing import Any

from sl_scaling.estimates import FINAL_EVALUATION_VARIANT
from sl_scaling.grid import FINAL_EVAL_SAMPLES

#: Knobs measured beside the default on the real path, one change each: (TrainConfig, TrainingSpeed)
#: changes. They say what each default bought; none changes which rows form a step or the loss, except
#: `length-grouped`, the batch order the experiment no longer uses (shown for what it cost).
#: `final-evaluation` changes no step: its epoch, the last, ends with the final evaluation in memory, as a
#: trained condition's does in `slscale run` (the projection's time for those evaluations).
TRAIN_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "checkpointing": ({"gradient_checkpointing": True}, {}),
    "micro-batch-20": ({}, {"micro_batch": 20}),
    "no-liger": ({}, {"liger_kernel": False}),
    "lora-input-cast": ({}, {"lora_input_cast": True}),
    "padded": ({}, {"padding_free": False}),
    "no-shared-prefix": ({}, {"share_prefix": False}),
    "peft-lora": ({}, {"fused_lora": False}),
    "loss-nan-check": ({}, {"loss_nan_check": True}),
    "fixed-segments": ({}, {"expandable_segments": False}),
    "length-grouped": ({"group_by_length": True}, {}),
    FINAL_EVALUATION_VARIANT: ({"final_samples": FINAL_EVAL_SAMPLES}, {}),
}
