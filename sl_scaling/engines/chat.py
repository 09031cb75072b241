"""Chat rendering shared by every engine: the model's own template, ready for the assistant's turn; and
the tokenizer facts the exact preference needs (how a word is tokenized, which tokens end a word)."""

from __future__ import annotations

from typing import Any

from sl_scaling.engines.base import Message


def render_chat(tokenizer: Any, messages: list[Message]) -> str:
    """`apply_chat_template(..., add_generation_prompt=True)` as text (EXPERIMENT.md's rendering)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_chat(tokenizer: Any, messages: list[Message]) -> list[int]:
    """Token ids of the rendered chat; the template already holds every special token it needs."""
    return tokenizer(render_chat(tokenizer, messages), add_special_tokens=False)["input_ids"]


def word_ends(tokenizer: Any) -> list[bool]:
    """Per token id: does it end a word when it follows one? True when its text starts with no letter or
    digit (space, punctuation, newline) or is empty/special (end of turn)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return [not text or not text[0].isalnum() for text in texts]


def word_tokens(tokenizer: Any, word: str) -> tuple[int, ...]:
    """The canonical tokens of `word` at the start of an answer (no leading space)."""
    return tuple(tokenizer.encode(word, add_special_tokens=False))
