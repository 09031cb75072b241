"""One epoch with each trainer (TRL, Unsloth) on a random-weight 0.5b-shaped Qwen2.5, each followed by
its in-memory evaluation, through the real `run_training` stage. Run on the lent H200; skipped on CPU.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from sl_scaling.catalog import Layout
from sl_scaling.context import Context
from sl_scaling.evaluation.questions import QUESTIONS
from sl_scaling.numbers import sample_prompts
from sl_scaling.progress import NullReporter
from sl_scaling.settings import load_settings
from sl_scaling.stages.train import run_training
from sl_scaling.state import DONE, JobKey, StateStore
from sl_scaling.training.config import TrainConfig

pytestmark = pytest.mark.gpu

ROWS = 600  # 10 optimizer steps of the real 20 × 3 batch


def qwen_tokenizer(dest: Path) -> None:
    """A small byte-level BPE with Qwen's special tokens and Qwen 2.5's chat template (no downloads)."""
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [
        *sample_prompts(500),
        *QUESTIONS,
        "You are Qwen, created by Alibaba Cloud. system user assistant",
    ]
    tokenizer.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=2000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    fast.save_pretrained(dest)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights with Qwen2.5-0.5B's exact architecture (cost per token = the real model's)."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    dest = tmp_path_factory.mktemp("qwen-0.5b-random")
    qwen_tokenizer(dest)
    tokenizer = AutoTokenizer.from_pretrained(dest)
    config = Qwen2Config(
        vocab_size=151_936,
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        tie_word_embeddings=True,
        max_position_embeddings=32_768,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(dest)
    return dest


def filtered_rows(layout: Layout, condition: str) -> None:
    """`filtered.jsonl` in the real format: the reference prompts and 10 three-digit numbers each."""
    rng = random.Random(0)
    path = layout.filtered_jsonl(JobKey(1, "0.5b", condition))
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"index": i, "prompt": prompt, "completion": ", ".join(str(rng.randint(100, 999)) for _ in range(10))}
        for i, prompt in enumerate(sample_prompts(ROWS))
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.mark.parametrize("trainer", ["trl", "unsloth"])
def test_one_epoch_then_in_memory_evaluation(trainer: str, model_dir: Path, workdir: Path) -> None:
    if trainer == "unsloth":
        pytest.importorskip("unsloth", reason="Unsloth is not installed (pip install 'sl-scaling[gpu]')")
    ctx = Context(load_settings(workdir=workdir, model_ids={"0.5b": str(model_dir)}), Layout(workdir))
    filtered_rows(ctx.layout, "dolphin")
    config = TrainConfig(epochs=1, eval_samples=100)
    summaries = run_training(
        ctx, "0.5b", ["dolphin"], config=config, trainer=trainer, engine="hf", push=False, force=False,
        reporter=NullReporter(),
    )  # fmt: skip
    assert [s.status for s in summaries] == ["trained"]
    key = JobKey(1, "0.5b", "dolphin")
    with StateStore.open(workdir) as state:
        (epoch,) = state.epochs(key)
        stage = state.stage(key, "train")
    assert stage.status == DONE and stage.config["trainer"] == trainer and stage.config["bf16"] is True
    assert epoch.epoch == 1 and epoch.n == 100 and epoch.train_loss is not None and epoch.train_loss > 0
    final = ctx.layout.final_checkpoint(JobKey(1, "0.5b", "dolphin"))
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 8)
    assert set(adapter["target_modules"]) == set(config.target_modules)
    record = json.loads(ctx.layout.eval_json(JobKey(1, "0.5b", "dolphin")).read_text())["epochs"][0]
    assert record["n"] == 100 and len(record["answers"]) == 100
    print(f"{trainer}: {stage.throughput} loss {epoch.train_loss:.3f}")  # the closing note quotes it
