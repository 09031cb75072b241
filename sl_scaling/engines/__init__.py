"""Inference engines behind one protocol, registered by name; vLLM is imported only when chosen."""

from __future__ import annotations

import importlib.util

from sl_scaling.catalog import SIZE_PARAMS_B
from sl_scaling.engines.base import Engine, Generation, GenerationRequest, Sampling
from sl_scaling.errors import MissingPrerequisiteError, OptionalDependencyError, UsageError

ENGINES = ("auto", "hf", "vllm")

__all__ = [
    "ENGINES",
    "Engine",
    "Generation",
    "GenerationRequest",
    "Sampling",
    "choose_engine",
    "generation_replicas",
    "open_engine",
]


def _vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def choose_engine(requested: str) -> tuple[str, str]:
    """The engine to use and a short sentence saying why (the CLI prints it)."""
    name = requested.strip().lower()
    if name not in ENGINES:
        raise UsageError(f"unknown engine '{requested}'; valid: {', '.join(ENGINES)}")
    if name == "hf":
        return "hf", "engine hf: Hugging Face transformers, as requested"
    if name == "vllm":
        if not _vllm_installed():
            raise OptionalDependencyError("vllm")
        if not _cuda_available():
            raise MissingPrerequisiteError("vLLM needs a CUDA GPU and none is visible; use --engine hf")
        return "vllm", "engine vllm: vLLM, as requested"
    if not _vllm_installed():
        return "hf", "engine hf: vLLM is not installed (pip install 'sl-scaling[gpu]' for it)"
    if not _cuda_available():
        return "hf", "engine hf: vLLM is installed but no CUDA GPU is visible"
    return "vllm", "engine vllm: vLLM is installed and a CUDA GPU is present"


#: Below this many parameters one vLLM process leaves the GPU idle part of each step (its CPU side sets
#: the pace): teacher generation runs two processes sharing the GPU. Measured at 0.5b on the H200
#: (benchmarks/README.md): 16.4k tokens/s in one process, 35.6k in two.
SMALL_MODEL_B = 1.0
SMALL_MODEL_REPLICAS = 2


def generation_replicas(size: str, tensor_parallel_size: int = 1) -> int:
    """vLLM processes for a long teacher-generation pass of `size` (1 unless the model is small)."""
    small = SIZE_PARAMS_B.get(size, SMALL_MODEL_B) < SMALL_MODEL_B
    return SMALL_MODEL_REPLICAS if small and tensor_parallel_size == 1 else 1


def open_engine(
    name: str,
    model: str,
    *,
    batch_size: int | None = None,
    tensor_parallel_size: int = 1,
    adapters: bool = True,
    eager: bool = False,
    replicas: int = 1,
) -> Engine:
    """Load `model` once into the named engine (`hf` or `vllm`; resolve `auto` with choose_engine).

    `tensor_parallel_size` shards vLLM over that many GPUs; the HF engine uses one. `adapters=False`
    promises that no request names a LoRA adapter: vLLM then runs without its LoRA layers (faster).
    `eager` starts vLLM without compilation and CUDA graphs (`SLSCALE_VLLM_EAGER`); `replicas` runs
    that many vLLM processes sharing one GPU (see `generation_replicas`).
    """
    if name == "hf":
        from sl_scaling.engines.hf import HFEngine

        return HFEngine.load(model, batch_size=batch_size)
    if name == "vllm":
        from sl_scaling.engines.vllm import VLLMEngine, VLLMOptions

        options = VLLMOptions(
            lora=adapters, tensor_parallel_size=tensor_parallel_size, enforce_eager=eager, replicas=replicas
        )
        return VLLMEngine.load(model, options, batch_size=batch_size)
    raise UsageError(f"unknown engine '{name}'; valid: hf, vllm")
