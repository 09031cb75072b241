"""The Unsloth trainer: `FastLanguageModel` weights and LoRA (fused kernels, its own gradient
checkpointing), trained by the same SFT loop and data as the TRL path. Imported only when chosen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sl_scaling.errors import OptionalDependencyError
from sl_scaling.training.config import TrainConfig


def _fast_language_model() -> Any:
    try:
        from unsloth import FastLanguageModel
    except ImportError:
        raise OptionalDependencyError("unsloth") from None
    return FastLanguageModel


class UnslothBackend:
    """bf16 LoRA (not 4-bit QLoRA: the experiment trains full-precision base weights)."""

    name = "unsloth"
    manages_checkpointing = True

    def load(self, model: str, config: TrainConfig) -> tuple[Any, Any]:
        fast = _fast_language_model()
        weights, tokenizer = fast.from_pretrained(
            model_name=model, max_seq_length=config.max_length, dtype=None, load_in_4bit=False
        )
        if getattr(tokenizer, "pad_token", None) is None:
            tokenizer.pad_token = tokenizer.eos_token
        peft_model = fast.get_peft_model(
            weights,
            **config.lora_kwargs(),
            use_gradient_checkpointing=False if config.gradient_checkpointing is False else "unsloth",
            random_state=config.seed,
            loftq_config=None,
        )
        return peft_model, tokenizer

    @contextmanager
    def inference(self, model: Any) -> Iterator[None]:
        """Unsloth's fast generation path for the evaluation, then its training mode again."""
        fast = _fast_language_model()
        fast.for_inference(model)
        try:
            yield
        finally:
            fast.for_training(model)
