"""The trainer protocol: a backend only builds the LoRA model and switches it in and out of inference.

Everything else (data, the SFT loop, checkpoints, the per-epoch callback) is shared, so TRL and
Unsloth train on the same tokens with the same schedule and differ only in their kernels.
"""

from __future__ import annotations

import importlib.util
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sl_scaling.errors import MissingPrerequisiteError, OptionalDependencyError, UsageError
from sl_scaling.training.config import TrainConfig

TRAINERS = ("auto", "trl", "unsloth")


class TrainerBackend(Protocol):
    name: str
    #: True when `load` already set up gradient checkpointing (then the SFT loop must not add its own).
    manages_checkpointing: bool

    def load(self, model: str, config: TrainConfig) -> tuple[Any, Any]:
        """The base model with fresh LoRA adapters (per `config`) and its tokenizer."""

    def inference(self, model: Any) -> AbstractContextManager[None]:
        """Switch the training model to generation for the per-epoch evaluation, then back."""


def _unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def choose_trainer(requested: str, *, unsloth_faster: bool | None = None) -> tuple[str, str]:
    """The trainer to use and a sentence saying why.

    `auto` picks Unsloth only when it is installed, a GPU is present and benchmark figures
    (`unsloth_faster`, from `slscale bench`) say it is faster; otherwise TRL, which runs everywhere.
    """
    name = requested.strip().lower()
    if name not in TRAINERS:
        raise UsageError(f"unknown trainer '{requested}'; valid: {', '.join(TRAINERS)}")
    if name == "trl":
        return "trl", "trainer trl: TRL SFTTrainer + PEFT LoRA, as requested"
    if name == "unsloth":
        if not _unsloth_installed():
            raise OptionalDependencyError("unsloth")
        if not _cuda_available():
            raise MissingPrerequisiteError("Unsloth needs a CUDA GPU and none is visible; use --trainer trl")
        return "unsloth", "trainer unsloth: Unsloth FastLanguageModel, as requested"
    if not _unsloth_installed():
        return "trl", "trainer trl: Unsloth is not installed (pip install 'sl-scaling[gpu]' for it)"
    if not _cuda_available():
        return "trl", "trainer trl: Unsloth is installed but no CUDA GPU is visible"
    if not unsloth_faster:
        return "trl", "trainer trl: no benchmark figures say Unsloth is faster here (see 'slscale bench')"
    return "unsloth", "trainer unsloth: installed, a GPU is present and the benchmark says it is faster"


def get_backend(name: str) -> TrainerBackend:
    """The backend for a chosen trainer name; Unsloth is imported only here, when chosen."""
    if name == "trl":
        from sl_scaling.training.trl import TrlBackend

        return TrlBackend()
    if name == "unsloth":
        from sl_scaling.training.unsloth import UnslothBackend

        return UnslothBackend()
    raise UsageError(f"unknown trainer '{name}'; valid: trl, unsloth")
