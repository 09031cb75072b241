"""Inference engines behind one protocol, registered by name; vLLM is imported only when chosen."""

from __future__ import annotations

from sl_scaling.catalog import SIZE_PARAMS_B
from sl_scaling.engines.base import Engine, EngineLoad, Generation, GenerationRequest, Sampling
from sl_scaling.registry import Backend, Preference, Registry

#: Inference engines by name. To add one: a module with an `Engine` class that has
#: `open(model, options: EngineLoad)`, and one `register` line here.
ENGINES = Registry("engine", option="--engine")
ENGINES.register(Backend("hf", "Hugging Face transformers", "sl_scaling.engines.hf:HFEngine"))
ENGINES.register(
    Backend(
        "vllm", "vLLM", "sl_scaling.engines.vllm:VLLMEngine", package="vllm", label="vLLM", needs_cuda=True
    )
)
ENGINES.prefer(Preference("vllm", "installed with a GPU", "vLLM is installed and a CUDA GPU is present"))
#: The engine that can evaluate a model in memory, mid-training (`from_model`).
IN_MEMORY = "hf"

__all__ = [
    "ENGINES",
    "IN_MEMORY",
    "Engine",
    "EngineLoad",
    "Generation",
    "GenerationRequest",
    "Sampling",
    "choose_engine",
    "generation_replicas",
    "open_engine",
]


def choose_engine(requested: str) -> tuple[str, str]:
    """The engine to use and a short sentence saying why (the CLI prints it)."""
    return ENGINES.choose(requested)


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
    load = EngineLoad(batch_size, tensor_parallel_size, adapters, eager, replicas)
    return ENGINES.load(name).open(model, load)
