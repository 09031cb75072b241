"""One LoRA layer's forward + backward at a size's shapes, PEFT's forward against the fused one
(`training/fused_lora.py`), under bf16 autocast on the GPU: what the fusion saves per layer, where the real
path's rows/s cannot tell it from noise (issue 16). A diagnostic, not a bench figure.

    python benchmarks/fused_lora_layer.py --size 7b --size 14b
"""

from __future__ import annotations

import argparse

import torch
from peft import LoraConfig, get_peft_model

from sl_scaling.bench import shapes
from sl_scaling.training.fused_lora import lora_switches

TOKENS, REPEATS = 60 * 143, 20


def layer_ms(size: str, features: tuple[int, int], fused: bool) -> float:
    """Milliseconds per forward + backward of one adapted linear layer (frozen bf16 base, float32 LoRA)."""
    base = torch.nn.Sequential(torch.nn.Linear(*features, bias=False)).cuda().to(torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=8, target_modules=["0"]))
    x = torch.randn(1, TOKENS, features[0], device="cuda", dtype=torch.bfloat16, requires_grad=True)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def step() -> None:
        with torch.autocast("cuda", torch.bfloat16), lora_switches(model, fuse=fused).applied():
            model(x).sum().backward()

    step()  # warm-up: cuBLAS' kernel choice, the allocator
    torch.cuda.synchronize()
    start.record()
    for _ in range(REPEATS):
        step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / REPEATS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", required=True)
    for size in parser.parse_args().size:
        hidden, intermediate = shapes.shape(size).hidden, shapes.shape(size).intermediate
        for name, features in (("q/o_proj", (hidden, hidden)), ("gate/up_proj", (hidden, intermediate))):
            peft, fused = layer_ms(size, features, False), layer_ms(size, features, True)
            print(f"{size} {name} {features}: PEFT {peft:.3f} ms, fused {fused:.3f} ms ({peft / fused:.2f}×)")


if __name__ == "__main__":
    main()
