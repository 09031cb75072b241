"""The trainer protocol: a backend only builds the LoRA model and switches it in and out of inference.

Everything else (data, the SFT loop, checkpoints, the per-epoch callback) is shared, so TRL and
Unsloth train on the same tokens with the same schedule and differ only in their kernels.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from sl_scaling.registry import Backend, Preference, Registry
from sl_scaling.training.config import TrainConfig


class TrainerBackend(Protocol):
    name: str
    #: True when `load` already set up gradient checkpointing (then the SFT loop must not add its own).
    manages_checkpointing: bool

    def load(self, model: str, config: TrainConfig) -> tuple[Any, Any]:
        """The base model with fresh LoRA adapters (per `config`) and its tokenizer."""

    def inference(self, model: Any) -> AbstractContextManager[None]:
        """Switch the training model to generation for the per-epoch evaluation, then back."""


def _unsloth_not_faster() -> str | None:
    """`auto` picks Unsloth only where the shipped bench figures say it is faster."""
    from sl_scaling.estimates import fastest_trainer

    if fastest_trainer()[0] == "unsloth":
        return None
    return "no benchmark figures say Unsloth is faster here (see 'slscale bench')"


#: Trainers by name. To add one: a module with a `TrainerBackend` class, and one `register` line here.
TRAINERS = Registry("trainer", option="--trainer")
TRAINERS.register(Backend("trl", "TRL SFTTrainer + PEFT LoRA", "sl_scaling.training.trl:TrlBackend"))
TRAINERS.register(
    Backend(
        "unsloth",
        "Unsloth FastLanguageModel",
        "sl_scaling.training.unsloth:UnslothBackend",
        package="unsloth",
        label="Unsloth",
        needs_cuda=True,
    )
)
TRAINERS.prefer(
    Preference(
        "unsloth",
        "installed with a GPU and the shipped bench says it is faster",
        "installed, a GPU is present and the benchmark says it is faster",
        _unsloth_not_faster,
    )
)


def choose_trainer(requested: str) -> tuple[str, str]:
    """The trainer to use and a sentence saying why: `auto` picks Unsloth only when it is installed,
    a GPU is present and the shipped benchmark figures say it is faster; otherwise TRL, which runs
    everywhere."""
    return TRAINERS.choose(requested)


def get_backend(name: str) -> TrainerBackend:
    """The backend for a chosen trainer name; Unsloth is imported only here, when chosen."""
    return TRAINERS.load(name)()
