"""Student training rows: `filtered.jsonl` → `[user: prompt, assistant: completion]` → token ids and labels.

No system message is given, so Qwen 2.5's template inserts its default system prompt, exactly as it
does when the student is evaluated. With the default completion-only loss the prompt tokens are
masked (-100); the boundary is where the tokenizer's own template says the assistant turn starts.
The rows are tokenized here, once, so that the TRL and Unsloth trainers see identical data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sl_scaling.errors import MalformedInputError, MissingPrerequisiteError
from sl_scaling.files import read_jsonl
from sl_scaling.numbers import student_chat

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Row:
    prompt: str
    completion: str


def load_rows(path: Path, max_rows: int) -> list[Row]:
    """The first `max_rows` kept rows (the filter already subsampled to ≤ 10,000)."""
    if not path.exists():
        raise MissingPrerequisiteError(f"no filtered data at {path}; run 'slscale filter' first")
    records, _ = read_jsonl(path)
    rows = []
    for number, record in enumerate(records[:max_rows], start=1):
        prompt, completion = record.get("prompt"), record.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise MalformedInputError(f"{path}: row {number} lacks a 'prompt' or 'completion' string")
        rows.append(Row(prompt, completion))
    if not rows:
        raise MissingPrerequisiteError(f"{path} has no rows; run 'slscale gen' and 'slscale filter' again")
    return rows


def split_chat(tokenizer: Any, row: Row) -> tuple[str, str]:
    """The rendered prompt (up to and including the assistant header) and the rendered rest.

    Fails loudly if the template does not render the prompt as a prefix of the full chat: then no
    honest prompt/completion boundary exists and completion-only loss would mask the wrong tokens.
    """
    prompt_text = tokenizer.apply_chat_template(
        student_chat(row.prompt), tokenize=False, add_generation_prompt=True
    )
    full_text = tokenizer.apply_chat_template(student_chat(row.prompt, row.completion), tokenize=False)
    if not full_text.startswith(prompt_text):
        raise MalformedInputError(
            "the tokenizer's chat template does not render the prompt as a prefix of the full chat, so the "
            "completion-only loss mask cannot be derived; use --loss full or a model with a standard template"
        )
    return prompt_text, full_text[len(prompt_text) :]


def encode_row(tokenizer: Any, row: Row, *, max_length: int, loss: str) -> dict[str, list[int]]:
    """`input_ids` and `labels` (prompt masked unless loss='full'), truncated to `max_length`.

    Prompt and completion are tokenized separately, so the prompt's tokens are exactly those the
    model sees at generation time and the completion starts at a token boundary.
    """
    prompt_text, completion_text = split_chat(tokenizer, row)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
    input_ids = (prompt_ids + completion_ids)[:max_length]
    masked = [IGNORE_INDEX] * len(prompt_ids) if loss == "completion" else prompt_ids
    labels = (masked + completion_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def build_dataset(tokenizer: Any, rows: Sequence[Row], *, max_length: int, loss: str) -> Any:
    """A `datasets.Dataset` of pre-tokenized rows; rows left without a trained token are dropped."""
    from datasets import Dataset

    encoded = [encode_row(tokenizer, row, max_length=max_length, loss=loss) for row in rows]
    encoded = [e for e in encoded if any(label != IGNORE_INDEX for label in e["labels"])]
    if not encoded:
        raise MalformedInputError(
            f"every row's completion lies beyond max length {max_length}; raise the max length"
        )
    return Dataset.from_list(encoded)
