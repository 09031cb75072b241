"""The TRL/PEFT trainer (runs everywhere, CPU included) and the SFT loop that both backends share."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, Trainer
from trl import SFTTrainer

from sl_scaling.training.config import TrainConfig
from sl_scaling.training.fused_lora import lora_switches
from sl_scaling.training.packed import SHARED_PREFIX, WithRowBoundaries, packed_attention
from sl_scaling.training.speed import RowLengths, TrainingSpeed, choose_training_speed


def fused_loss_available(model: Any) -> bool:
    """TRL 1.15 computes the SFT loss with a Triton kernel, which needs Triton and a CUDA/XPU device."""
    device = next(model.parameters()).device.type
    return device in ("cuda", "xpu") and importlib.util.find_spec("triton") is not None


class PortableSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss falls back to the model's own cross-entropy where TRL's fused kernel cannot
    run (CPU, no Triton). Both are the mean token NLL over the labels, so results agree up to rounding.

    A training step (forward and backward, so a checkpointed layer's recompute too) runs with the speed
    settings that change how a step is computed, never what: padding-free (`padding_free`), each micro-batch
    is one flattened sequence with packed attention (`training/packed.py`) given the rows' boundaries (found
    by the collator, `WithRowBoundaries`), with `share_prefix` the rows' common prefix computed once; with
    `lora_input_cast` off, PEFT's copy of each LoRA layer's input
    to float32 is skipped (under bf16 autocast the adapter's matmul casts it back to the same bf16 values
    anyway); with `fused_lora`, each LoRA layer runs as one autograd function that sums its adapter term and
    its input's gradients in the matmuls' epilogues (`training/fused_lora.py`, which also holds the LoRA
    switches, the layers found once per trainer); and the Trainer's `model.train()` walk is skipped where
    every module already trains (`train_mode_kept`). Evaluation inside training runs outside the step, on
    PEFT's own forward."""

    def __init__(
        self,
        *args: Any,
        lora_input_cast: bool = True,
        fused_lora: bool = False,
        share_prefix: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        skip_cast = not lora_input_cast and self.args.bf16
        self.lora_switches = lora_switches(self.model, fuse=fused_lora, skip_cast=skip_cast)
        self.model_modules = tuple(self.model.modules())
        if self.padding_free:
            self.data_collator = WithRowBoundaries(self.data_collator, share_prefix=share_prefix)

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
        with ExitStack() as step:
            step.enter_context(self.lora_switches.applied())
            if model is self.model:
                step.enter_context(train_mode_kept(model, self.model_modules))
            if self.padding_free:
                step.enter_context(packed_attention(model))
            return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(
        self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        shared = inputs.get(SHARED_PREFIX)
        if shared is not None and model.training:
            # TRL counts the tokens the step computed (`num_tokens`); the rows' own include each shared copy.
            rows, prefix = shared["prefix_slots"].shape
            self._total_train_tokens += (rows - 1) * prefix
        if fused_loss_available(model):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs["use_cache"] = False
        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)


@contextmanager
def train_mode_kept(model: Any, modules: Sequence[Any]) -> Iterator[None]:
    """The Trainer calls `model.train()` before every micro-batch: a walk that sets every module's mode (~5 ms of
    CPU at 7b, ~14 ms at 32b, while the GPU waits for the step). Where every module already trains, the call is
    a no-op for the block; otherwise (after an evaluation), or where a library replaced `train`, it runs as always."""
    patched = "train" in vars(model) or type(model).train is not torch.nn.Module.train
    if patched or not all(module.training for module in modules):
        yield
        return
    model.train = lambda mode=True: model
    try:
        yield
    finally:
        del model.train


def lora_config(config: TrainConfig) -> Any:
    """PEFT's LoraConfig with EXPERIMENT.md's LoRA settings."""
    from peft import LoraConfig

    return LoraConfig(**config.lora_kwargs(), task_type="CAUSAL_LM")


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def experiment_sft_kwargs(config: TrainConfig) -> dict[str, Any]:
    """EXPERIMENT.md's optimisation settings as SFTConfig fields: shared by training and the bench's
    reference baselines, so both always run the same recipe."""
    return {
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "learning_rate": config.lr,
        "lr_scheduler_type": config.lr_scheduler,
        "warmup_steps": config.warmup_steps,
        "max_grad_norm": config.max_grad_norm,
        "max_length": config.max_length,
        "seed": config.seed,
    }


def sft_config(config: TrainConfig, output_dir: Path, speed: dict[str, Any]) -> Any:
    """TRL's SFTConfig for one student. Checkpoints (optimizer, scheduler, RNG, data order) are saved
    at every epoch's end, only the latest kept: that is what a resume continues from.

    `speed` holds the fast-path knobs of `training/speed.py` (checkpointing, the micro-batch split of the
    same effective batch, Liger kernels, TF32, ...): they change how fast the same optimisation runs, not
    which rows form a step or how the loss weighs them. The batch order (random, as the reference) is the
    experiment's (`TrainConfig.group_by_length`).
    """
    from trl import SFTConfig

    experiment = {
        **experiment_sft_kwargs(config),
        "output_dir": str(output_dir),
        "num_train_epochs": config.epochs,
        "bf16": bool(config.bf16),
        "fp16": False,
        "data_seed": config.seed,
        "train_sampling_strategy": "group_by_length" if config.group_by_length else "random",
        "packing": False,
        "logging_strategy": "steps",
        "logging_steps": 1,
        "save_strategy": "epoch",
        "save_total_limit": 1,
        "report_to": "none",
        "disable_tqdm": True,
        "include_num_input_tokens_seen": "no",  # the callback counts the rows' own tokens, with no GPU sync
        "dataloader_pin_memory": torch.cuda.is_available(),
    }
    return SFTConfig(**{**experiment, **speed})


def training_speed(
    model: Any,
    config: TrainConfig,
    rows: RowLengths,
    *,
    backend_checkpointing: bool,
    memory_share: float = 1.0,
) -> TrainingSpeed:
    """The fast-path settings for this model, these rows and GPU (or its `memory_share` of it); an explicit
    `gradient_checkpointing` wins, and a backend with its own checkpointing (Unsloth) gets none from the
    SFT loop."""
    speed = choose_training_speed(
        model,
        batch_size=config.batch_size,
        grad_accum=config.grad_accum,
        rows=rows,
        memory_share=memory_share,
    )
    if backend_checkpointing:
        return replace(
            speed,
            gradient_checkpointing=False,
            liger_kernel=False,
            padding_free=False,
            share_prefix=False,
            lora_input_cast=True,
            fused_lora=False,
            reason="checkpointing and kernels: the backend's own",
        )
    if config.gradient_checkpointing is not None:
        return replace(
            speed, gradient_checkpointing=config.gradient_checkpointing, reason="checkpointing: as configured"
        )
    return speed


def sft_trainer(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    config: TrainConfig,
    output_dir: Path,
    callbacks: Sequence[Any],
    speed: TrainingSpeed,
) -> Any:
    """The SFT loop on pre-tokenized rows (`input_ids`, `labels`): labels carry the loss mask."""
    if speed.liger_kernel:
        apply_liger_kernels(model)
    trainer = PortableSFTTrainer(
        model=model,
        args=sft_config(config, output_dir, speed.sft_kwargs(config.effective_batch)),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        lora_input_cast=speed.lora_input_cast,
        fused_lora=speed.fused_lora,
        share_prefix=speed.share_prefix,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes through our reporter, not raw dicts on stdout
    return trainer


def apply_liger_kernels(model: Any) -> None:
    """Liger's RMSNorm/SwiGLU/RoPE kernels patched into the model, as TRL's `use_liger_kernel` did before
    TRL deprecated it (for Hub kernels, which need the Hub); its fused linear cross-entropy stays off:
    TRL's own fused LM head computes the loss."""
    from transformers.integrations.liger import apply_liger_kernel

    apply_liger_kernel(model, {"fused_linear_cross_entropy": False})


def with_lora(weights: Any, config: TrainConfig) -> Any:
    """Fresh LoRA adapters on `weights`; LoRA's A matrices are random: same seed, same starting adapter."""
    from peft import get_peft_model
    from transformers import set_seed

    set_seed(config.seed)
    return get_peft_model(weights, lora_config(config))


class TrlBackend:
    """Transformers weights + PEFT LoRA, trained by TRL's SFTTrainer."""

    name = "trl"
    #: TRL's own (SFTConfig) gradient checkpointing applies.
    manages_checkpointing = False

    def load(self, model: str, config: TrainConfig) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM

        from sl_scaling.models import default_device, default_dtype

        tokenizer = load_tokenizer(model)
        weights = AutoModelForCausalLM.from_pretrained(
            model, dtype=default_dtype(default_device()), attn_implementation="sdpa"
        )
        return with_lora(weights, config), tokenizer

    def inference(self, model: Any) -> AbstractContextManager[None]:
        """Nothing to switch: the HF engine puts the model in eval mode and restores train mode itself."""
        return nullcontext()
