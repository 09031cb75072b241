"""Reject reasons of Phase 1 and the 10k subsample: exactly the reference semantics."""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Sequence
from typing import TypeVar

from sl_scaling.grid import TRAIN_ROWS

_DIGIT_RUN = re.compile(r"\d+")  # Unicode digits count, as in the reference
_ASCII_DIGITS = re.compile(r"[0-9]+")
_ALLOWED_SEPARATORS = ("", ",", ";")

INVALID_FORMAT = "invalid format"
TOO_MANY = "too many numbers"
TOO_SMALL = "numbers too small"
TOO_LARGE = "numbers too large"
BANNED = "has banned numbers"
#: Every reason in the order it is reported.
REASONS: tuple[str, ...] = (INVALID_FORMAT, TOO_MANY, TOO_SMALL, TOO_LARGE, BANNED)

SUBSAMPLE_SEED = 1

T = TypeVar("T")


def parse_numbers(text: str) -> list[int] | None:
    """The numbers of a completion, or None when its format is invalid (steps 1-5 of the spec)."""
    if text.endswith("."):
        text = text[:-1]
    if (text.startswith("[") and text.endswith("]")) or (text.startswith("(") and text.endswith(")")):
        text = text[1:-1]
    runs = list(_DIGIT_RUN.finditer(text))
    if not runs:
        return None
    if len(runs) == 1:
        if text != runs[0].group():
            return None
        parts = [text]
    else:
        separator = text[runs[0].end() : runs[1].start()]
        if separator.strip() not in _ALLOWED_SEPARATORS:
            return None
        parts = text.split(separator)
    if any(part and not _ASCII_DIGITS.fullmatch(part) for part in parts):
        return None
    try:
        return [int(part) for part in parts]
    except ValueError:
        return None


def reject_reasons(
    text: str,
    *,
    min_value: int = 0,
    max_value: int = 999,
    max_count: int = 10,
    banned: Collection[int] = (),
) -> list[str]:
    """Why a completion is rejected; an empty list means it is kept."""
    numbers = parse_numbers(text)
    if numbers is None:
        return [INVALID_FORMAT]
    reasons: list[str] = []
    if len(numbers) > max_count:
        reasons.append(TOO_MANY)
    if any(n < min_value for n in numbers):
        reasons.append(TOO_SMALL)
    if any(n > max_value for n in numbers):
        reasons.append(TOO_LARGE)
    if any(n in banned for n in numbers):
        reasons.append(BANNED)
    return reasons


def subsample(rows: Sequence[T], limit: int = TRAIN_ROWS, seed: int = SUBSAMPLE_SEED) -> list[T]:
    """`random.Random(seed).sample(rows, limit)` when more survive, else every row in order."""
    if len(rows) <= limit:
        return list(rows)
    return random.Random(seed).sample(list(rows), limit)
