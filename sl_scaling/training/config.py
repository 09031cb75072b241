"""The resolved fine-tuning configuration: EXPERIMENT.md Phase 2's values as defaults, each overridable.

It is saved as JSON beside the adapters (`train_config.json`) and in the DB's train stage config, so
every artifact says how it was made and a resume can refuse to continue under different settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from sl_scaling.errors import MalformedInputError, UsageError
from sl_scaling.evaluation.runner import EVAL_MAX_NEW_TOKENS
from sl_scaling.files import atomic_write_json, read_json
from sl_scaling.grid import EPOCHS, EVAL_SAMPLES, FINAL_EVAL_SAMPLES, TRAIN_ROWS

LossMode = Literal["completion", "full"]
LOSS_MODES: tuple[str, ...] = ("completion", "full")

TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)

#: Fields that may differ between the interrupted run and its resume (they do not change the weights).
RESUME_NEUTRAL_FIELDS = frozenset({"eval_samples", "eval_max_new_tokens", "final_samples"})

CONFIG_FILE = "train_config.json"


@dataclass(frozen=True)
class TrainConfig:
    """One student's fine-tuning and its per-epoch evaluation."""

    # LoRA (EXPERIMENT.md): r 8, alpha 8, dropout 0, bias none, no rsLoRA, the seven projections.
    lora_r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    lora_bias: str = "none"
    use_rslora: bool = False
    target_modules: tuple[str, ...] = TARGET_MODULES
    # Optimisation: 10 epochs, ≤ 10,000 rows, 20 × 3 = 60 effective batch, lr 2e-4 linear, 5 warm-up steps.
    epochs: int = EPOCHS
    max_rows: int = TRAIN_ROWS
    batch_size: int = 20
    grad_accum: int = 3
    lr: float = 2e-4
    lr_scheduler: str = "linear"
    warmup_steps: int = 5
    max_grad_norm: float = 1.0
    max_length: int = 500
    #: None = bf16 where the hardware supports it (a CUDA GPU with bf16), float32 elsewhere.
    bf16: bool | None = None
    #: None = only where the activations would not fit (training/speed.py); True/False force it.
    gradient_checkpointing: bool | None = None
    #: LoRA init and data order; `slscale train` sets it from the run (seeds.train_seed).
    seed: int = 42
    #: Batches drawn at random each epoch, as the reference. True builds each step from rows of similar
    #: length (less padding, ~10% faster) but reweights the loss: it is normalised by the tokens of a step,
    #: so rows in steps of short completions weigh more. An opt-in that changes the experiment.
    group_by_length: bool = False
    loss: LossMode = "completion"
    # Per-epoch evaluation (Phase 3): the 50 questions, `eval_samples` answers at temperature 1.
    eval_samples: int = EVAL_SAMPLES
    eval_max_new_tokens: int = EVAL_MAX_NEW_TOKENS
    #: Answers of the final evaluation of the last epoch (100 per question, as the paper); 0 skips it.
    final_samples: int = FINAL_EVAL_SAMPLES

    def __post_init__(self) -> None:
        if self.loss not in LOSS_MODES:
            raise UsageError(f"unknown loss '{self.loss}'; valid: {', '.join(LOSS_MODES)}")
        positive = ("epochs", "max_rows", "batch_size", "grad_accum", "max_length", "eval_samples")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.final_samples < 0:
            raise UsageError(f"--final-samples must be 0 (none) or more, not {self.final_samples}")
        if self.lr <= 0:
            raise UsageError(f"--lr must be positive, not {self.lr}")

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum

    def lora_kwargs(self) -> dict[str, Any]:
        """EXPERIMENT.md's LoRA settings in the names PEFT and Unsloth both take."""
        return {
            "r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "bias": self.lora_bias,
            "use_rslora": self.use_rslora,
            "target_modules": list(self.target_modules),
        }

    def resolved(self) -> TrainConfig:
        """Fill in hardware-dependent choices (bf16) so that what is saved is what ran."""
        if self.bf16 is not None:
            return self
        import torch

        return replace(self, bf16=bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()))

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["target_modules"] = list(self.target_modules)
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        if "target_modules" in values:
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**values)

    def resume_differences(self, other: TrainConfig) -> list[str]:
        """Settings that change the weights and differ from `other` (a resume must not mix them)."""
        mine, theirs = self.to_json(), other.to_json()
        return [
            f"{name} {theirs[name]} → {mine[name]}"
            for name in mine
            if name not in RESUME_NEUTRAL_FIELDS and mine[name] != theirs[name]
        ]


def save_config(directory: Path, config: TrainConfig, **extra: Any) -> Path:
    """`train_config.json` beside the adapters: the resolved config plus e.g. model, trainer, W&B run id."""
    path = directory / CONFIG_FILE
    atomic_write_json(path, {**config.to_json(), **extra})
    return path


def load_saved_config(directory: Path) -> tuple[TrainConfig, dict[str, Any]] | None:
    """The config a previous run saved here and its extra fields, or None."""
    path = directory / CONFIG_FILE
    record = read_json(path)
    if record is None:
        return None
    try:
        config = TrainConfig.from_json(record)
    except (TypeError, ValueError, UsageError) as exc:
        raise MalformedInputError(
            f"{path}: not a training configuration ({exc}); restore or delete it (a done condition is kept "
            "without it; --force retrains)"
        ) from None
    extra = {k: v for k, v in record.items() if k not in config.to_json()}
    return config, extra
