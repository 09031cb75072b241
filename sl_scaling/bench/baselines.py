"""What ours is compared with: plain `model.generate`, TRL's SFTTrainer defaults, Unsloth's reference setup.

Each returns a `Run`: the work done and how long the steady state took, measured the same way as ours.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sl_scaling.engines.base import GenerationRequest
from sl_scaling.training.config import TrainConfig
from sl_scaling.training.trl import experiment_sft_kwargs, lora_config

#: Steps of one training measurement, and the first step that counts (the rest is warm-up).
TRAIN_STEPS, FIRST_TIMED_STEP = 12, 5


@dataclass
class Run:
    """One measured run: `rows` and `tokens` processed in `seconds`, and the peak GPU memory."""

    rows: int
    tokens: int
    seconds: float
    peak_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def plain_generate(
    model: Any, tokenizer: Any, requests: Sequence[GenerationRequest], *, batch_size: int, max_new_tokens: int
) -> Run:
    """`model.generate` as a user would call it: input order, left padding, one batch size, sampling."""
    import torch

    texts = [
        tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
        for r in requests
    ]
    tokenizer.padding_side = "left"
    synchronize()
    start, new_tokens = time.perf_counter(), 0
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        )
        batch = batch.to(model.device)
        with torch.inference_mode():
            out = model.generate(
                **batch,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,  # random weights: fix the length so both sides do equal work
                pad_token_id=tokenizer.pad_token_id,
            )
        new_tokens += (out.shape[1] - batch["input_ids"].shape[1]) * out.shape[0]
    synchronize()
    return Run(rows=len(texts), tokens=new_tokens, seconds=time.perf_counter() - start)


# --- training ------------------------------------------------------------------------------------


def reference_sft_kwargs(config: TrainConfig, *, steps: int, output_dir: Path) -> dict[str, Any]:
    """EXPERIMENT.md's hyper-parameters as SFTConfig fields, for a `steps`-long timed run."""
    return {
        **experiment_sft_kwargs(config),
        "output_dir": str(output_dir),
        "bf16": _cuda(),
        "max_steps": steps,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
    }


def step_clock() -> Any:
    """A TrainerCallback that notes the wall-clock end of every optimizer step (device synchronised) and
    the batch settings the Trainer ran with. Wall clock, so processes training side by side compare."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.settings: dict[str, Any] = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.settings = {
                "micro_batch": args.per_device_train_batch_size,
                "grad_accum": args.gradient_accumulation_steps,
                "gradient_checkpointing": args.gradient_checkpointing,
                "batch_order": str(getattr(args, "train_sampling_strategy", "random")),
            }

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            synchronize()
            self.ends.append(time.time())

        def steady(self, warmup_steps: int) -> tuple[int, float, float]:
            """(steps, start, end) after the first `warmup_steps` steps."""
            return len(self.ends) - warmup_steps, self.ends[warmup_steps - 1], self.ends[-1]

    return StepClock()


def timed_training(
    make_trainer: Callable[[Any], Any], rows: list[dict[str, Any]], tokens_per_row: float, config: TrainConfig
) -> Run:
    """Build a trainer (given a step clock), train TRAIN_STEPS steps, time the steady-state ones."""
    import torch

    clock = step_clock()
    trainer = make_trainer(clock)
    trainer.train()
    steps, start, end = clock.steady(FIRST_TIMED_STEP - 1)
    timed_rows = steps * config.effective_batch
    return Run(
        rows=timed_rows,
        tokens=round(timed_rows * tokens_per_row),
        seconds=end - start,
        peak_bytes=torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0,
    )


def trl_default_trainer(
    model: Any, tokenizer: Any, dataset: Any, config: TrainConfig, output_dir: Path
) -> Callable:
    """TRL's SFTTrainer with its own defaults (gradient checkpointing on) and the experiment's LoRA."""
    from trl import SFTConfig, SFTTrainer

    def make(callback: Any) -> Any:
        args = SFTConfig(**reference_sft_kwargs(config, steps=TRAIN_STEPS, output_dir=output_dir))
        return SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(config),
            callbacks=[callback],
        )

    return make


def unsloth_trainer(model_dir: Path, dataset: Any, config: TrainConfig, output_dir: Path) -> Callable:
    """Unsloth with the reference's settings: its loader and LoRA patching, gradient checkpointing on."""
    import torch
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel  # imported last in a process: it patches transformers and TRL

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(model_dir), max_seq_length=config.max_length, dtype=torch.bfloat16, load_in_4bit=False
    )
    model = FastLanguageModel.get_peft_model(
        model, **config.lora_kwargs(), use_gradient_checkpointing="unsloth", random_state=config.seed
    )

    def make(callback: Any) -> Any:
        args = SFTConfig(**reference_sft_kwargs(config, steps=TRAIN_STEPS, output_dir=output_dir))
        return SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[callback]
        )

    return make
