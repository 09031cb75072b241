"""The fast-path knobs for LoRA training on the machine at hand, measured by `slscale bench`.

Why each default (benchmarks/README.md has the figures behind them):
- gradient checkpointing off where the activations fit: it recomputes the forward pass (≈ +50% FLOPs);
  a frozen-base LoRA keeps few activations, so an H200 fits them up to 32b at batch 20 × ~160 tokens;
- length-grouped batches: rows of ~120–170 tokens padded to the longest in a random batch waste ~10%;
- Liger's fused RMSNorm/SwiGLU/RoPE kernels when `liger_kernel` is importable (TRL keeps its own fused
  LM head, which already scores only the completion's positions);
- bf16, TF32 matmuls, PyTorch's SDPA attention (FlashAttention-2 is not on the lent machine).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

#: Bytes of saved activations per token and layer, per (hidden, intermediate) element, in bf16, with
#: head-room; calibrated on the H200 (benchmarks/results/h200.json, 32b peak without checkpointing).
_ACT_HIDDEN, _ACT_INTERMEDIATE, _BYTES = 10, 4, 2
_MARGIN = 1.15
#: Memory kept free for the optimizer state, the CUDA context, allocator slack and evaluation.
_RESERVE_BYTES = 6 * 2**30
#: Rows are ≤ ~180 tokens after the filter; plan for the longest batch, not the average one.
PLANNING_TOKENS_PER_ROW = 200


@dataclass(frozen=True)
class TrainingSpeed:
    """How to train fast here; `reason` says why checkpointing is on or off (logged by the trainer)."""

    gradient_checkpointing: bool
    group_by_length: bool = True
    padding_free: bool = False
    liger_kernel: bool = False
    attn_implementation: str = "sdpa"
    tf32: bool = True
    reason: str = ""

    def sft_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for TRL's `SFTConfig` (on top of the experiment's hyper-parameters)."""
        kwargs: dict[str, Any] = {
            "gradient_checkpointing": self.gradient_checkpointing,
            "train_sampling_strategy": "group_by_length" if self.group_by_length else "random",
            "padding_free": self.padding_free,
            "use_liger_kernel": self.liger_kernel,
            "tf32": self.tf32,
        }
        if self.gradient_checkpointing:
            kwargs["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
        if self.padding_free:  # TRL refuses max_length with padding_free: rows must be pre-truncated
            kwargs["max_length"] = None
        return kwargs

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `AutoModelForCausalLM.from_pretrained`."""
        return {"attn_implementation": self.attn_implementation}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def activation_bytes(hidden: int, intermediate: int, layers: int, tokens: int) -> int:
    """Saved activations of a LoRA forward pass without checkpointing (frozen base, fused LM head)."""
    per_token_layer = (_ACT_HIDDEN * hidden + _ACT_INTERMEDIATE * intermediate) * _BYTES
    return int(per_token_layer * layers * tokens * _MARGIN)


def checkpointing_needed(
    model_config: Any, parameters: int, *, batch_size: int, total_bytes: int, weight_bytes: int = 2
) -> tuple[bool, str]:
    """Whether activations of one micro-batch would not fit beside the bf16 weights."""
    tokens = batch_size * PLANNING_TOKENS_PER_ROW
    acts = activation_bytes(
        model_config.hidden_size, model_config.intermediate_size, model_config.num_hidden_layers, tokens
    )
    need = parameters * weight_bytes + acts + _RESERVE_BYTES
    gib = 2**30
    verdict = (
        f"weights+activations ≈ {need / gib:.0f} GiB of {total_bytes / gib:.0f} GiB at batch {batch_size}"
    )
    return need > total_bytes, verdict


def choose_training_speed(model: Any, *, batch_size: int, device: str | None = None) -> TrainingSpeed:
    """The fastest settings that fit: decided from the loaded model's config and the GPU's memory."""
    import torch

    on_gpu = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if not on_gpu:
        return TrainingSpeed(gradient_checkpointing=False, tf32=False, reason="CPU: memory is not the limit")
    parameters = sum(p.numel() for p in model.parameters())
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    needed, verdict = checkpointing_needed(model.config, parameters, batch_size=batch_size, total_bytes=total)
    return TrainingSpeed(
        gradient_checkpointing=needed,
        liger_kernel=liger_available(),
        reason=("checkpointing on: " if needed else "checkpointing off: ") + verdict,
    )
