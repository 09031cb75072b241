"""What the GPU tests share: a model directory with no download."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sl_scaling.bench import shapes


def write_random_qwen(path: Path, size: str = "0.5b", *, dtype: Any = None, **config: Any) -> Path:
    """Random weights of a Qwen2.5 shape (`config`: smaller dimensions) and the bench's Qwen-like
    tokenizer and chat template, saved where `SLSCALE_MODEL_IDS__{SIZE}` can point."""
    import torch

    torch.manual_seed(0)
    shapes.random_model(size, device="cpu", dtype=dtype, **config).save_pretrained(path)
    shapes.bench_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def random_qwen() -> Callable[..., Path]:
    return write_random_qwen
