"""vLLM through slscale's own `VLLMEngine`, beside plain `generate` measured in the same call.

`default: true` marks what `slscale gen`/`eval` run (`engines.generation_replicas`: two processes at
0.5b for generation, one otherwise; evaluation in one); the projection reads those records.

Each engine start (torch.compile, CUDA graphs: about a minute) is paid once per configuration and
reported as `startup_s`; the rates exclude it, as `slscale gen` loads each size once for all 16
conditions. On one start several things are timed that need no restart: what `gen`/`eval` run
(`default`), the same without per-row seeds, and `vllm.LLM.generate` called directly on the same engine
with one `SamplingParams` (`vllm-raw`: what our layer around vLLM costs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sl_scaling.bench import data, measure, shapes
from sl_scaling.bench.baselines import Run, synchronize
from sl_scaling.engines import generation_replicas
from sl_scaling.engines.base import GenerationRequest
from sl_scaling.engines.chat import encode_chat
from sl_scaling.engines.vllm import VLLMEngine, VLLMOptions

WARM_ROWS = 256  # the first run after a start is slower (lazy initialisation inside vLLM)


def raw_generate(engine: VLLMEngine, requests: list[GenerationRequest], max_new_tokens: int) -> Run:
    """`LLM.generate` on the same prompt ids with one `SamplingParams` (no seeds, vLLM's own decoding)."""
    from vllm import SamplingParams

    llm = engine.llm
    prompts = [{"prompt_token_ids": encode_chat(engine.tokenizer, r.messages)} for r in requests]
    synchronize()
    start = time.perf_counter()
    outputs = llm.generate(
        prompts, SamplingParams(temperature=1.0, max_tokens=max_new_tokens), use_tqdm=False
    )
    seconds = time.perf_counter() - start
    return Run(len(outputs), sum(len(o.outputs[0].token_ids) for o in outputs), seconds)


class VLLMBench:
    """The vLLM measurements of one size (random weights of its real shape, `load_format="dummy"`)."""

    def __init__(self, size: str, workdir: Path, plain: dict[str, float], gen_rows: int) -> None:
        self.size, self.workdir, self.plain = size, workdir, plain
        self.model_dir = shapes.write_model_dir(size, workdir / f"vllm-{size}")
        self.requests = {
            "gen": data.teacher_requests(gen_rows),
            "eval": data.eval_requests(measure.EVAL_SAMPLES),
        }
        self.new_tokens = {"gen": measure.GEN_NEW_TOKENS, "eval": measure.EVAL_NEW_TOKENS}

    def _start(self, options: VLLMOptions) -> tuple[VLLMEngine, float]:
        start = time.perf_counter()
        engine = VLLMEngine.load(str(self.model_dir), options)
        measure.engine_run(engine, self.requests["gen"][:WARM_ROWS], self.new_tokens["gen"])
        return engine, round(time.perf_counter() - start, 1)

    def _record(self, phase: str, engine: str, run: Run, **fields: Any) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if phase in self.plain:
            extra = {
                "baseline": "plain-generate",
                "baseline_tokens_per_s": round(self.plain[phase], 1),
                "ratio_vs_plain_generate": round(run.tokens_per_s / self.plain[phase], 3),
            }
        return measure.record(self.size, phase, engine, run, **fields, **extra)

    def default(self, phases: tuple[str, ...]) -> list[dict[str, Any]]:
        """What `gen` and `eval --control` run (no LoRA), then what each choice of ours costs."""
        options = VLLMOptions(lora=False, load_format="dummy")
        engine, startup = self._start(options)
        try:
            records = []
            for phase in phases:
                run = measure.engine_run(engine, self.requests[phase], self.new_tokens[phase])
                ours = phase == "eval" or generation_replicas(self.size) == 1
                records.append(
                    self._record(phase, "vllm", run, variant="default", default=ours, startup_s=startup)
                )
            gen, tokens = self.requests["gen"], self.new_tokens["gen"]
            unseeded = measure.engine_run(engine, gen, tokens, seed=None)
            records.append(self._record("gen", "vllm", unseeded, variant="no-row-seeds", default=False))
            records.append(self._record("gen", "vllm-raw", raw_generate(engine, gen, tokens)))
            return records
        finally:
            engine.close()

    def adapters(self, count: int, answers: int) -> list[dict[str, Any]]:
        """LoRA enabled: teacher generation on it (what enabling LoRA costs), then `count` adapters ×
        `answers` evaluation answers in one call on one load (the final evaluation of a size)."""
        paths = [
            str(shapes.write_random_adapter(self.size, self.workdir / f"lora-{self.size}-{i}", seed=i))
            for i in range(count)
        ]
        engine, startup = self._start(VLLMOptions(lora=True, load_format="dummy"))
        try:
            run = measure.engine_run(engine, self.requests["gen"], self.new_tokens["gen"])
            records = [
                self._record("gen", "vllm", run, variant="lora-enabled", default=False, startup_s=startup)
            ]
            requests = [
                GenerationRequest((path, r.key), r.messages, adapter=path)
                for path in paths
                for r in data.eval_requests(answers)
            ]
            run = measure.engine_run(engine, requests, measure.EVAL_NEW_TOKENS)
            records.append(
                measure.record(
                    self.size, "eval", "vllm", run, variant=f"adapters-{count}x{answers}", default=True,
                    adapters=count, answers_per_adapter=answers,
                )
            )  # fmt: skip
            return records
        finally:
            engine.close()

    def replicas(self, count: int) -> list[dict[str, Any]]:
        """`count` engine processes sharing the GPU, each with a slice of every chunk."""
        engine, startup = self._start(VLLMOptions(lora=False, load_format="dummy", replicas=count))
        try:
            run = measure.engine_run(engine, self.requests["gen"], self.new_tokens["gen"])
            ours = generation_replicas(self.size) == count
            return [
                self._record("gen", "vllm", run, variant=f"replicas-{count}", default=ours, startup_s=startup)
            ]
        finally:
            engine.close()


def bench_vllm(
    size: str,
    *,
    phases: tuple[str, ...],
    plain: dict[str, float],
    workdir: Path,
    gen_rows: int,
    adapters: int = 16,
    adapter_answers: int = 5_000,
    replicas: tuple[int, ...] = (),
    checkpoint: Callable[[list[dict[str, Any]]], None] = lambda records: None,
) -> list[dict[str, Any]]:
    """Every vLLM measurement of one size; `plain` is plain generate's tokens/s per phase (same call)."""
    bench = VLLMBench(size, workdir, plain, gen_rows)
    records = measure.guarded(f"{size} vllm default", lambda: bench.default(phases))
    checkpoint(records)
    if adapters and "eval" in phases:
        records += measure.guarded(f"{size} vllm adapters", lambda: bench.adapters(adapters, adapter_answers))
        checkpoint(records)
    for count in replicas:
        records += measure.guarded(f"{size} vllm replicas-{count}", lambda c=count: bench.replicas(c))
        checkpoint(records)
    return records
