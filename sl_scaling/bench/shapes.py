"""Random-weight Qwen2.5 models of each size, and a tokenizer that counts tokens like Qwen's.

No weights can be downloaded where the bench runs (the lent GPU has no network), and a throughput
benchmark needs none: a model with the real architecture and random weights costs exactly what the
real one costs per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sl_scaling.catalog import REAL_SIZES
from sl_scaling.errors import UsageError
from sl_scaling.tiny import DEFAULT_SYSTEM_PROMPT, PRETOKENIZE_REGEX, QWEN25_CHAT_TEMPLATE

if TYPE_CHECKING:
    import torch

VOCAB_SIZE = 151_936
ENDOFTEXT, IM_START, IM_END = 151_643, 151_644, 151_645


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


#: Qwen2.5 Instruct configs (hidden, layers, heads, KV heads, intermediate, tied embeddings).
SHAPES: dict[str, Shape] = {
    "0.5b": Shape(896, 24, 14, 2, 4864, True),
    "1.5b": Shape(1536, 28, 12, 2, 8960, True),
    "3b": Shape(2048, 36, 16, 2, 11008, True),
    "7b": Shape(3584, 28, 28, 4, 18944, False),
    "14b": Shape(5120, 48, 40, 8, 13824, False),
    "32b": Shape(5120, 64, 40, 8, 27648, False),
}
assert set(SHAPES) == set(REAL_SIZES)


def shape(size: str) -> Shape:
    if size not in SHAPES:
        raise UsageError(f"no Qwen2.5 shape for size '{size}'; valid: {', '.join(SHAPES)}")
    return SHAPES[size]


def parameter_count(size: str) -> int:
    """Parameters of the real model, counted from its shape (embeddings once when tied) — N in 4·N·T."""
    s = shape(size)
    kv = s.kv_heads * s.head_dim
    attention = (s.hidden * s.hidden + s.hidden) + 2 * (s.hidden * kv + kv) + s.hidden * s.hidden
    layer = attention + 3 * s.hidden * s.intermediate + 2 * s.hidden
    embeddings = VOCAB_SIZE * s.hidden * (1 if s.tied else 2)
    return s.layers * layer + s.hidden + embeddings


def qwen_config(size: str, **changes: Any) -> Any:
    """A `Qwen2Config` with the real hyper-parameters of a Qwen2.5 size (`changes`: a smaller one for tests)."""
    from transformers import Qwen2Config

    s = shape(size)
    return Qwen2Config(
        **{
            "vocab_size": VOCAB_SIZE,
            "hidden_size": s.hidden,
            "num_hidden_layers": s.layers,
            "num_attention_heads": s.heads,
            "num_key_value_heads": s.kv_heads,
            "intermediate_size": s.intermediate,
            "tie_word_embeddings": s.tied,
            "max_position_embeddings": 32_768,
            "rope_theta": 1_000_000.0,
            "rms_norm_eps": 1e-6,
            "hidden_act": "silu",
            "bos_token_id": ENDOFTEXT,
            "eos_token_id": IM_END,
            "pad_token_id": ENDOFTEXT,
            **changes,
        }
    )


def random_model(size: str, *, device: str = "cuda", dtype: torch.dtype | None = None, **config: Any) -> Any:
    """Build the model straight on `device` (no CPU copy: a 32b in bf16 is 65 GB) with random weights."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(qwen_config(size, **config), dtype=dtype)
    model.generation_config.eos_token_id = [IM_END, ENDOFTEXT]
    model.generation_config.pad_token_id = ENDOFTEXT
    return model.eval()


# --- tokenizer -------------------------------------------------------------------------------------


def _corpus_words() -> list[str]:
    """Every pre-token the bench's texts can contain (prompts, questions, system prompts, completions)."""
    import regex

    from sl_scaling.bench.data import completion_formats
    from sl_scaling.catalog import ANIMALS
    from sl_scaling.evaluation.exact import spellings
    from sl_scaling.evaluation.questions import QUESTIONS
    from sl_scaling.numbers import sample_prompts, system_prompt

    texts = [DEFAULT_SYSTEM_PROMPT, *QUESTIONS, *ANIMALS, "system", "user", "assistant", "\n", " "]
    texts += [system_prompt(a) or "" for a in ANIMALS]
    texts += [w for a in ANIMALS for w in spellings(a)]  # the words the exact measure scores
    texts += sample_prompts(2_000, seed=7)
    texts += [fmt.format(*"0123456789") for fmt in completion_formats()]
    splitter = regex.compile(PRETOKENIZE_REGEX)
    words: dict[str, None] = {str(d): None for d in range(10)}
    for text in texts + [text + "\n" for text in texts]:  # a text's last piece as the chat template ends it
        for piece in splitter.findall(text):
            words[piece] = None
    return list(words)


@cache
def bench_tokenizer() -> Any:
    """A tokenizer over Qwen's 151,936 ids that splits text as Qwen's does (one token per digit, one per
    bench word with its leading space), so token counts — hence costs — match the real model's closely.

    A byte-level BPE like Qwen's own, whose merges spell each of the bench's pieces whole: saved beside a
    Qwen2 config, `AutoTokenizer` rebuilds it as `Qwen2Tokenizer` from its vocabulary and merges (as the
    engines load a model directory), and that rebuild must encode alike. Qwen's special-token ids and
    Qwen2.5's chat template (default system prompt included).
    """
    import json

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    # BPE trained to completion on the pieces: its merges rebuild every piece as one token.
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = split
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=ENDOFTEXT, initial_alphabet=alphabet, show_progress=False)
    trained.train_from_iterator(_corpus_words(), trainer=trainer)
    model = json.loads(trained.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(merge) for merge in model["merges"]]
    for i in range(len(vocab), VOCAB_SIZE):
        vocab[f"<|x{i}|>"] = i  # ids no text encodes to; Qwen's special ids are set below
    for i, token in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]):
        del vocab[f"<|x{ENDOFTEXT + i}|>"]
        vocab[token] = ENDOFTEXT + i
    backend = Tokenizer(models.BPE(vocab, merges, fuse_unk=False))
    backend.pre_tokenizer = split
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        padding_side="left",
    )
    tokenizer.chat_template = QWEN25_CHAT_TEMPLATE
    return tokenizer


# --- directories vLLM can start from -----------------------------------------------------------------

#: Qwen2.5-Instruct's generation_config.json sampling defaults: a model directory carries them so that
#: a test can show the engines ignore them (the experiment samples at plain temperature 1).
QWEN_GENERATION_DEFAULTS = {"do_sample": True, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}


def write_model_dir(size: str, path: Path) -> Path:
    """config.json, generation_config.json and the bench tokenizer: enough for vLLM's
    `load_format="dummy"` (random weights, nothing read from disk, the real cost per token)."""
    from transformers import GenerationConfig

    path.mkdir(parents=True, exist_ok=True)
    qwen_config(size).save_pretrained(path)
    GenerationConfig(
        bos_token_id=ENDOFTEXT, eos_token_id=[IM_END, ENDOFTEXT], **QWEN_GENERATION_DEFAULTS
    ).save_pretrained(path)
    bench_tokenizer().save_pretrained(path)
    return path


def write_random_adapter(size: str, path: Path, *, seed: int, scale: float = 0.01) -> Path:
    """A PEFT LoRA adapter of the experiment's settings (r 8, alpha 8, all seven projections) with
    random A and B, written without building the model (a 7b adapter is ~40 MB)."""
    import json

    import torch
    from safetensors.torch import save_file

    from sl_scaling.training.config import TrainConfig

    config, s = TrainConfig(), shape(size)
    kv = s.kv_heads * s.head_dim
    dims = {  # (in, out) of each target projection
        "q_proj": (s.hidden, s.hidden), "k_proj": (s.hidden, kv), "v_proj": (s.hidden, kv),
        "o_proj": (s.hidden, s.hidden), "gate_proj": (s.hidden, s.intermediate),
        "up_proj": (s.hidden, s.intermediate), "down_proj": (s.intermediate, s.hidden),
    }  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(s.layers):
        for module in config.target_modules:
            block = "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            prefix = f"base_model.model.model.layers.{layer}.{block}.{module}"
            fan_in, fan_out = dims[module]
            a = torch.randn(config.lora_r, fan_in, generator=generator) / fan_in**0.5
            b = torch.randn(fan_out, config.lora_r, generator=generator) * scale
            tensors[f"{prefix}.lora_A.weight"] = a.to(torch.bfloat16)
            tensors[f"{prefix}.lora_B.weight"] = b.to(torch.bfloat16)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": config.lora_r, "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout, "bias": config.lora_bias, "use_rslora": config.use_rslora,
        "target_modules": sorted(config.target_modules), "fan_in_fan_out": False,
        "base_model_name_or_path": None,
    }  # fmt: skip
    (path / "adapter_config.json").write_text(json.dumps(adapter_config, indent=1))
    return path
