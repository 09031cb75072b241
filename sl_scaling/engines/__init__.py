"""Inference engines behind one protocol; optional ones (vLLM) are imported only when chosen."""

from sl_scaling.engines.base import Engine, Generation, GenerationRequest, Sampling

__all__ = ["Engine", "Generation", "GenerationRequest", "Sampling"]
