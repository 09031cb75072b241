"""Chat rendering shared by every engine: the model's own template, ready for the assistant's turn."""

from __future__ import annotations

from typing import Any

from sl_scaling.engines.base import Message


def render_chat(tokenizer: Any, messages: list[Message]) -> str:
    """`apply_chat_template(..., add_generation_prompt=True)` as text (EXPERIMENT.md's rendering)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_chat(tokenizer: Any, messages: list[Message]) -> list[int]:
    """Token ids of the rendered chat; the template already holds every special token it needs."""
    return tokenizer(render_chat(tokenizer, messages), add_special_tokens=False)["input_ids"]
