"""The fast-path knobs for LoRA training on the machine at hand, measured by `slscale bench`.

Why each default (benchmarks/README.md has the figures behind them):
- gradient checkpointing off where the activations fit: it recomputes the forward pass (≈ +50% FLOPs);
  a frozen-base LoRA keeps few activations, so an H200 fits them up to 32b at 30 rows of ≤ ~180 tokens;
- random batches, as the reference (EXPERIMENT.md): length-grouped ones waste ~10% less padding but
  change which rows form a step, hence the loss weights, so length grouping is not a speed knob at all
  (`TrainConfig.group_by_length`, the experiment's opt-in, off; the bench only measures it);
- Liger's fused RMSNorm/SwiGLU/RoPE kernels when `liger_kernel` is importable (the `gpu` extra installs it;
  `training/trl.py` patches them in; TRL keeps its own fused LM head, which already scores only the
  completion's positions);
- bf16, TF32 matmuls;
- padding-free micro-batches where PyTorch's FlashAttention varlen kernel runs (`training/packed.py`): the
  rows of a micro-batch as one sequence, so no matmul runs on padding (~14% of a padded micro-batch's
  tokens); each row attends to itself only, and the loss is the padded batch's;
- the rows' shared prefix (Qwen's default system prompt and the user header, ~16% of a row's tokens) computed
  once per micro-batch, every row's attention reading it as its own (`training/packed.py`): the same forward
  for every row and the same loss, through ~16% fewer tokens; where a training has the GPU to itself (7b–32b
  +15–18%; trainings sharing a GPU are bound by kernel launches, which its gathers add);
- no copy of a LoRA layer's input to float32 (PEFT's default casts it to the adapter's dtype, and autocast
  casts it straight back to bf16 for the matmul): the matmul sees the same bf16 values, so the same step,
  with four activation-sized copies fewer per LoRA layer and micro-batch (`training/trl.py`);
- each LoRA layer as one autograd function (`training/fused_lora.py`): the rank-r term first, the big matmul
  added onto it in its epilogue, the input's two gradients likewise — no activation-sized scaling, sum or copy
  of its own;
- no NaN/inf check of each micro-batch's loss on a GPU (`loss_nan_check`): the check is a GPU sync, and it
  only ever changed the logged loss of a NaN step, never the update;
- micro-batches planned from the rows' own lengths and the prefix they share (`RowLengths`): the heaviest
  micro-batch any batch order can form must fit in what the GPU has for this training, so 32b trains 30 × 2
  (1.07× over 20 × 3);
- PyTorch's expandable allocator segments where a training has the GPU to itself (`expandable_segments`):
  micro-batches of varying lengths near the memory's limit fragment fixed segments until the allocator
  frees its cache and retries (a device-wide sync; 32b at 30 × 2: 3 retries in 45 steps, none with them).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import accumulate
from typing import Any

#: Bytes of saved activations per token and layer, per (hidden, intermediate) element, in bf16.
#: Calibrated on the H200 (2026-12-03: padding-free, no LoRA input cast; benchmarks/results/raw-2026-12-03-packed):
#: above the weights, 32b at 20 × 3, 14b at 30 × 2 and 7b at 60 × 1 peaked 42.4, 30.3 and 37.1 GiB for rows of
#: ~143 tokens; the formula gives 42.2, 31.6 and 38.2 GiB for those tokens (it was 10 and 4, calibrated on
#: padded batches with the cast).
_ACT_HIDDEN, _ACT_INTERMEDIATE, _BYTES = 8, 3, 2
#: Memory kept free for the optimizer state, the CUDA context, allocator slack and evaluation.
_RESERVE_BYTES = 6 * 2**30
#: The largest micro-batch the activation formula was checked against (7b at 60 × 1 of ~143-token rows): above
#: it, plans get a 25% margin.
CALIBRATED_TOKENS, UNCALIBRATED_MARGIN = 60 * 143, 1.25
#: Conditions of a size trained at once on one GPU (each in its own process, each with its share of the
#: memory, under slscale's own CUDA MPS daemon: `executors/mps.py`): one training of a small size leaves the
#: GPU half idle. Measured on an H200 (benchmarks/README.md, 2026-12-03, MPS session): 0.5b × 4 gives 3.7× the
#: rows/s of one, 1.5b × 3 1.9×, 3b × 2 1.3×; more trainings gain ≤ 9% (0.5b × 6), 2% (3b × 3) or nothing (1.5b × 4, × 5);
#: on 2026-12-04's faster steps 3b × 3 gave 0.97× of × 2.
TRAININGS_PER_GPU = {"0.5b": 4, "1.5b": 3, "3b": 2}


def trainings_per_gpu(size: str) -> int:
    """How many trainings of `size` share one GPU by default (1: a whole GPU each)."""
    return TRAININGS_PER_GPU.get(size, 1)


@dataclass(frozen=True)
class TrainingSpeed:
    """How to train fast here; `reason` says why (logged by the trainer)."""

    gradient_checkpointing: bool
    #: Rows per forward/backward pass; the effective batch (20 × 3 = 60) is kept by accumulating
    #: `effective_batch // micro_batch` passes: the same rows per optimizer step and the same loss, since
    #: the loss is normalised by the tokens of the whole step (TRL's `num_items_in_batch`).
    micro_batch: int = 20
    liger_kernel: bool = False
    tf32: bool = True
    #: Each micro-batch's rows as one flattened sequence with per-row attention (`training/packed.py`).
    padding_free: bool = False
    #: With `padding_free`: the rows' common unscored prefix computed once per micro-batch (`training/packed.py`).
    share_prefix: bool = False
    #: PEFT's cast of each LoRA layer's input to float32 (a copy autocast undoes); off on a GPU under bf16.
    lora_input_cast: bool = True
    #: Each LoRA layer as one autograd function, its sums in the matmuls' epilogues (`training/fused_lora.py`).
    fused_lora: bool = False
    #: The Trainer's NaN/inf check of every micro-batch's loss (`logging_nan_inf_filter`): a GPU sync after each
    #: backward that leaves the GPU idle while the CPU runs the optimizer step and fetches the next batch. It
    #: only changes the *logged* loss of a NaN step (a running average instead of the NaN), never the update;
    #: off on a GPU, where the log then shows such a step as it is.
    loss_nan_check: bool = True
    #: The training's memory in PyTorch's expandable segments (`expandable_segments`).
    expandable_segments: bool = False
    reason: str = ""

    def sft_kwargs(self, effective_batch: int) -> dict[str, Any]:
        """Keyword arguments for TRL's `SFTConfig` (they override the experiment's batch split)."""
        kwargs: dict[str, Any] = {
            "per_device_train_batch_size": self.micro_batch,
            "gradient_accumulation_steps": effective_batch // self.micro_batch,
            "gradient_checkpointing": self.gradient_checkpointing,
            "padding_free": self.padding_free,
            "tf32": self.tf32,
            "logging_nan_inf_filter": self.loss_nan_check,
        }
        if self.gradient_checkpointing:
            kwargs["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
        if self.padding_free:  # TRL refuses max_length with padding_free: rows must be pre-truncated
            kwargs["max_length"] = None
        return kwargs

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RowLengths:
    """The training rows as the memory planner sees them: their token counts, longest first, and the prefix
    all of them share unscored (which `share_prefix` computes once per micro-batch; 0 when there is none).
    Planning from the rows themselves bounds every micro-batch any batch order can form."""

    longest_first: tuple[int, ...]
    shared_prefix: int = 0

    def heaviest_micro_batch(self, rows: int, *, share_prefix: bool) -> int:
        """The tokens computed by the heaviest micro-batch of `rows` rows: the longest rows together."""
        heaviest = self.longest_first[:rows]
        shared = (len(heaviest) - 1) * self.shared_prefix if share_prefix and heaviest else 0
        return sum(heaviest) - shared


def row_lengths(input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> RowLengths:
    """The rows' lengths and the prefix all of them share (the micro-batches' rule, `shared_prefix_length`, over
    every row, so each micro-batch shares at least as much)."""
    import torch

    from sl_scaling.training.packed import shared_prefix_length

    lengths = [len(ids) for ids in input_ids]
    flat = {
        "input_ids": torch.tensor([t for ids in input_ids for t in ids]),
        "labels": torch.tensor([t for row in labels for t in row]),
    }
    cumulative = torch.tensor([0, *accumulate(lengths)])
    return RowLengths(tuple(sorted(lengths, reverse=True)), shared_prefix_length(flat, cumulative))


@contextmanager
def expandable_segments(on: bool) -> Iterator[None]:
    """New allocations in the block go to segments that grow in place instead of fixed blocks that fragment
    (the weights, loaded before, stay where they are); the allocator's setting before it comes back after it,
    and a `PYTORCH_CUDA_ALLOC_CONF` of the user's wins."""
    import torch

    if not on or "PYTORCH_CUDA_ALLOC_CONF" in os.environ:
        yield
        return
    before = "expandable_segments:True" in torch._C._accelerator_getAllocatorSettings()
    torch._C._accelerator_setAllocatorSettings("expandable_segments:True")
    try:
        yield
    finally:
        torch._C._accelerator_setAllocatorSettings(f"expandable_segments:{before}")


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def activation_bytes(hidden: int, intermediate: int, layers: int, tokens: int) -> int:
    """Saved activations of a LoRA forward pass without checkpointing (frozen base, fused LM head)."""
    return (_ACT_HIDDEN * hidden + _ACT_INTERMEDIATE * intermediate) * _BYTES * layers * tokens


def memory_needed(model_config: Any, parameters: int, *, tokens: int, weight_bytes: int = 2) -> int:
    """bf16 weights + saved activations of a micro-batch of `tokens` tokens + the reserve; above the
    calibrated micro-batch, a 25% margin: measured, not calibrated."""
    acts = activation_bytes(
        model_config.hidden_size, model_config.intermediate_size, model_config.num_hidden_layers, tokens
    )
    margin = 1.0 if tokens <= CALIBRATED_TOKENS else UNCALIBRATED_MARGIN
    return parameters * weight_bytes + int(acts * margin) + _RESERVE_BYTES


def plan_batches(
    model_config: Any,
    parameters: int,
    *,
    batch_size: int,
    grad_accum: int,
    total_bytes: int,
    rows: RowLengths,
    share_prefix: bool = False,
) -> tuple[int | None, str]:
    """The largest micro-batch (a divisor of the effective batch, ≥ `batch_size`) whose heaviest micro-batch of
    `rows` fits without checkpointing, or None when not even `batch_size` fits; with a one-line reason."""
    effective = batch_size * grad_accum
    candidates = sorted(
        {effective // k for k in range(1, grad_accum + 1) if effective % k == 0}, reverse=True
    )
    gib = 2**30

    def need(micro: int) -> int:
        tokens = rows.heaviest_micro_batch(micro, share_prefix=share_prefix)
        return memory_needed(model_config, parameters, tokens=tokens)

    for micro in [c for c in candidates if c >= batch_size]:
        if need(micro) <= total_bytes:
            split = f"{micro} × {effective // micro}"
            return micro, f"micro-batch {split} ≈ {need(micro) / gib:.0f} of {total_bytes / gib:.0f} GiB"
    return None, f"batch {batch_size} needs ≈ {need(batch_size) / gib:.0f} of {total_bytes / gib:.0f} GiB"


def choose_training_speed(
    model: Any,
    *,
    batch_size: int,
    grad_accum: int,
    rows: RowLengths,
    device: str | None = None,
    memory_share: float = 1.0,
) -> TrainingSpeed:
    """The fastest settings that fit: decided from the loaded model's config, the rows' lengths and this
    training's share of the GPU's memory (below 1 when several trainings share the GPU)."""
    import torch

    from sl_scaling.training.packed import varlen_kernel_available

    on_gpu = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if not on_gpu:
        return TrainingSpeed(
            gradient_checkpointing=False,
            micro_batch=batch_size,
            tf32=False,
            reason="CPU: memory is not the limit",
        )
    # With the GPU to itself (`alone`), a training plans within what other processes leave free (a server left
    # running, a notebook), computes the shared prefix once and allocates in expandable segments. Not when
    # trainings share it: they are bound by launching kernels, and the prefix's gathers add launches (H200,
    # 2026-12-04: 0.5b × 4 796 rows/s with, 1,154 without; 1.5b × 3 492 / 498); their plans stay far from the limit.
    alone, varlen = memory_share >= 1.0, varlen_kernel_available()
    share_prefix = varlen and alone
    parameters = sum(p.numel() for p in model.parameters())
    total = int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory * memory_share)
    if alone:
        free, _ = torch.cuda.mem_get_info()
        total = min(total, free + torch.cuda.memory_reserved())
    micro, verdict = plan_batches(
        model.config,
        parameters,
        batch_size=batch_size,
        grad_accum=grad_accum,
        total_bytes=total,
        rows=rows,
        share_prefix=share_prefix,
    )
    return TrainingSpeed(
        gradient_checkpointing=micro is None,
        micro_batch=micro or batch_size,
        liger_kernel=liger_available(),
        padding_free=varlen,
        share_prefix=share_prefix,
        lora_input_cast=False,
        fused_lora=True,
        loss_nan_check=False,
        expandable_segments=alone,
        reason=("checkpointing off, " if micro else "checkpointing on: ") + verdict,
    )
