"""Which weights a size loads, and the dtype/device it runs on (bf16 on a capable GPU, float32 on CPU)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sl_scaling.catalog import TINY
from sl_scaling.errors import MissingPrerequisiteError, UsageError

if TYPE_CHECKING:
    import torch

    from sl_scaling.settings import Settings


def _looks_like_path(value: str) -> bool:
    """Hub ids are `owner/name`; anything absolute, relative (`./`, `../`) or `~` is a local path."""
    return value.startswith(("/", "./", "../", "~", ".\\")) or value in (".", "..")


def resolve_model(settings: Settings, size: str) -> str:
    """The model a size loads: an existing local directory, or a Hub id that is in the local cache or
    on the Hub right now (checked in seconds, before any stage starts); tiny is shipped."""
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
    from sl_scaling.hub import model_unavailable

    problem = model_unavailable(settings, model)
    if problem:
        raise MissingPrerequisiteError(
            f"cannot load {model} for size {size}: {problem}; download it first (hf download {model}), "
            f"point SLSCALE_MODEL_IDS__{size.upper()} at a local copy, or check the network"
        )
    return model


#: Below this many parameters a CPU model runs on one intra-op thread: its matrices are too small to
#: share, and OpenMP threads spin against other processes. Measured on tiny under load: generation
#: 4-7× faster; a LoRA training step of 20 rows 0.36 s of CPU on one thread against 2.4 s on two.
SMALL_MODEL_PARAMS = 20_000_000


def cpu_threads_for(model: Any) -> int | None:
    """1 for a small model on the CPU, None (torch's own choice) otherwise."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    return 1 if on_cpu and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS else None


@contextmanager
def intra_op_threads(count: int | None) -> Iterator[None]:
    """Temporarily use `count` intra-op threads (None: leave torch's setting alone)."""
    import torch

    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
