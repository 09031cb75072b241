"""Which weights a size loads, and the dtype/device it runs on (bf16 on a capable GPU, float32 on CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sl_scaling.catalog import TINY
from sl_scaling.errors import UsageError

if TYPE_CHECKING:
    import torch

    from sl_scaling.settings import Settings


def _looks_like_path(value: str) -> bool:
    """Hub ids are `owner/name`; anything absolute, relative (`./`, `../`) or `~` is a local path."""
    return value.startswith(("/", "./", "../", "~", ".\\")) or value in (".", "..")


def resolve_model(settings: Settings, size: str) -> str:
    """The model a size loads: a Hub id or an existing local directory (tiny is built on first use)."""
    model = settings.model_id(size)
    if size == TINY and model == TINY:
        from sl_scaling.tiny import ensure_tiny_model

        return str(ensure_tiny_model(settings.tiny_cache))
    if _looks_like_path(model) or Path(model).expanduser().exists():
        path = Path(model).expanduser()
        if not path.exists():
            raise UsageError(
                f"the model path for size {size} does not exist: {path} (check SLSCALE_MODEL_IDS)"
            )
        return str(path.resolve())
    return model


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    """bf16 where the GPU supports it (half the memory, the reference's choice), float32 elsewhere."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.startswith("cuda"):
        return torch.float16
    return torch.float32
