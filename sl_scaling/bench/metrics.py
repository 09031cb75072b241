"""What every bench measurement reports the same way: MFU against the H200's measured peak, and the
device's peak memory (reset between measurements)."""

from __future__ import annotations

import gc

#: Dense bf16 FLOP/s of one H200 measured in a large matmul (shared/device/README.md).
PEAK_FLOPS = 790e12
GIB = 2**30


def mfu(parameters: int, tokens_per_s: float, peak_flops: float = PEAK_FLOPS) -> float:
    """Model FLOPs utilisation of LoRA training, counting 4·N·T (forward 2NT + input gradients 2NT)."""
    return 4 * parameters * tokens_per_s / peak_flops


def free_memory() -> None:
    """Drop what the last measurement left and restart the peak-memory count."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.reset_accumulated_memory_stats()


def peak_bytes() -> int:
    import torch

    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0


def allocator_retries() -> int:
    """How often the caching allocator ran out, freed its cache and retried (each a device-wide sync): a plan
    near the memory's limit shows here before it fails."""
    import torch

    return torch.cuda.memory_stats().get("num_alloc_retries", 0) if torch.cuda.is_available() else 0
