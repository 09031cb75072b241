"""The HF engine on the GPU: bf16, batched teacher generation and multi-adapter evaluation on one load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sl_scaling.bench import shapes
from sl_scaling.bench.data import eval_requests, teacher_requests
from sl_scaling.engines import GenerationRequest, Sampling
from sl_scaling.engines.hf import HFEngine

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def engine() -> HFEngine:
    model = shapes.random_model("0.5b")
    return HFEngine.from_model(model, shapes.bench_tokenizer())


def test_teacher_pass_over_all_conditions_on_the_gpu(engine: HFEngine) -> None:
    requests = teacher_requests(16 * 8)  # 8 prompts × 16 conditions, one pass
    sampling = Sampling(max_new_tokens=12, seed=1)
    done = [g for batch in engine.generate(requests, sampling) for g in batch]
    assert engine.model.device.type == "cuda" and engine.model.dtype == torch.bfloat16
    assert sorted(g.key for g in done) == sorted(r.key for r in requests)
    assert all(0 < g.completion_tokens <= 12 and g.prompt_tokens > 0 for g in done)


def test_adapters_share_one_base_model(engine: HFEngine, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    adapters = []
    for name in ("a", "b"):
        peft_model = get_peft_model(
            shapes.random_model("0.5b"), LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"])
        )
        peft_model.save_pretrained(tmp_path / name)
        adapters.append(str(tmp_path / name))
    base = eval_requests(20)
    requests = [
        GenerationRequest((adapter, r.key), r.messages, adapter=adapter) for adapter in adapters for r in base
    ] + base
    done = [g for batch in engine.generate(requests, Sampling(max_new_tokens=6, seed=2)) for g in batch]
    assert len(done) == len(requests)
