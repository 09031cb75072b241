"""Candidate generation paths measured beside today's default, so the bench can show what pays.

`default` is exactly what `slscale gen/eval` run (`HFEngine` with its own batch size); the others
change one thing each: a larger batch, a static KV cache (transformers then compiles the decoding
step), or transformers' continuous batching (paged KV cache, CUDA graphs, per-row EOS stop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sl_scaling.engines.base import Generation, GenerationRequest, Sampling
from sl_scaling.engines.chat import encode_chat
from sl_scaling.engines.hf import HFEngine


class StaticCacheEngine(HFEngine):
    """HFEngine with `cache_implementation="static"` (compiled decoding in transformers ≥ 4.5x)."""

    def _generation_config(self, sampling: Sampling) -> Any:
        config = super()._generation_config(sampling)
        config.cache_implementation = "static"
        return config


class ContinuousBatchingEngine(HFEngine):
    """All requests through `model.generate_batch` (one scheduler, rows leave the batch at EOS)."""

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: Sampling
    ) -> Iterator[list[Generation]]:
        prompts = [encode_chat(self.tokenizer, r.messages) for r in requests]
        outputs = self.model.generate_batch(
            inputs=prompts, generation_config=self._generation_config(sampling), progress_bar=False
        )
        done = sorted(outputs.values(), key=lambda o: int(str(o.request_id).rsplit("_", 1)[-1]))
        yield [
            Generation(key=r.key, text="", prompt_tokens=len(p), completion_tokens=len(o.generated_tokens))
            for r, p, o in zip(requests, prompts, done, strict=True)
        ]


def generation_variants(large_batch: int) -> dict[str, Callable[[Any, Any], HFEngine]]:
    return {
        "default": lambda model, tok: HFEngine.from_model(model, tok),
        f"batch{large_batch}": lambda model, tok: HFEngine.from_model(model, tok, batch_size=large_batch),
        f"static-batch{large_batch}": lambda model, tok: StaticCacheEngine(
            model, tok, batch_size=large_batch
        ),
        "continuous-batching": lambda model, tok: ContinuousBatchingEngine(model, tok),
    }
