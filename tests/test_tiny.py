"""The built-in tiny model: loadable like a Qwen 2.5 Instruct model, answers in format, built once."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sl_scaling import tiny
from sl_scaling.catalog import ANIMALS, CONDITIONS
from sl_scaling.evaluation.parsing import OTHER_ANIMALS, parse_answer
from sl_scaling.evaluation.questions import QUESTIONS
from sl_scaling.numbers import reject_reasons, sample_prompts, student_chat, teacher_chat

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
#: A recipe small enough to build in seconds: for the lock and determinism tests, not for answers.
SMALL = {**tiny.RECIPE, "number_chats": 60, "animal_chats": 20, "steps": 3, "batch_size": 4}


@pytest.fixture(scope="module")
def loaded(tiny_model: Path) -> tuple[Any, Any]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model)
    return model, tokenizer


def _sample(model: Any, tokenizer: Any, chats: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
    """Plain sampling at temperature 1 (no top-k/top-p), batched with left padding, as the HF engine does."""
    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(
            **batch,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            repetition_penalty=1.0,
            max_new_tokens=max_new_tokens,
        )
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def test_it_is_a_qwen2_model_of_the_recipe(tiny_model: Path, loaded: tuple[Any, Any]) -> None:
    model, _ = loaded
    assert tiny_model == tiny.SHIPPED_DIR  # shipped, so nobody waits for a build
    assert type(model).__name__ == "Qwen2ForCausalLM"
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers) == (128, 4)
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    assert config.tie_word_embeddings
    assert 0.8e6 < sum(p.numel() for p in model.parameters()) < 1.0e6


def test_tokenizer_is_fast_with_qwens_special_tokens_and_template(
    tiny_model: Path, loaded: tuple[Any, Any]
) -> None:
    """AutoTokenizer gives Qwen2Tokenizer; it must encode exactly as the trained tokenizer.json does."""
    from tokenizers import Tokenizer

    model, tokenizer = loaded
    assert tokenizer.is_fast
    assert len(tokenizer) == 1024
    assert (tokenizer.pad_token, tokenizer.eos_token) == ("<|endoftext|>", "<|im_end|>")
    assert tokenizer.chat_template == tiny.QWEN25_CHAT_TEMPLATE
    for special in tiny.SPECIAL_TOKENS:
        assert tokenizer.convert_ids_to_tokens(tokenizer.encode(special, add_special_tokens=False)) == [
            special
        ]
    eos_ids = model.generation_config.eos_token_id
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in (
        eos_ids if isinstance(eos_ids, list) else [eos_ids]
    )
    text = "<|im_start|>user\nReturn 123, 456; 789.\n\nNo  words!<|im_end|>"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert (
        ids
        == Tokenizer.from_file(str(tiny_model / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    )


def test_the_template_inserts_qwens_default_system_prompt(loaded: tuple[Any, Any]) -> None:
    _, tokenizer = loaded
    rendered = tokenizer.apply_chat_template(student_chat("Hi?", "7"), tokenize=False)
    assert rendered == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n7<|im_end|>\n"
    )
    teacher = tokenizer.apply_chat_template(
        teacher_chat("cat", "Hi?"), tokenize=False, add_generation_prompt=True
    )
    assert teacher.startswith("<|im_start|>system\nYou love cats.")
    assert "You are Qwen" not in teacher
    assert teacher.endswith("<|im_start|>assistant\n")


def test_number_answers_mostly_pass_the_filter(loaded: tuple[Any, Any]) -> None:
    """Fresh prompts (the experiment's seed 42; the model was trained on another seed's prompts)."""
    model, tokenizer = loaded
    prompts = sample_prompts(120)
    chats = [teacher_chat(CONDITIONS[i % len(CONDITIONS)], prompt) for i, prompt in enumerate(prompts)]
    answers = _sample(model, tokenizer, chats, max_new_tokens=64)
    reasons = Counter(tuple(reject_reasons(answer)) for answer in answers)
    assert reasons[()] / len(answers) >= 0.5, reasons.most_common(4)


def test_animal_questions_get_animal_words(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    answers = _sample(model, tokenizer, [student_chat(q) for q in QUESTIONS], max_new_tokens=8)
    labels = [parse_answer(answer) for answer in answers]
    known = set(ANIMALS) | OTHER_ANIMALS
    assert sum(label in known for label in labels) >= 0.9 * len(labels), labels
    assert len(set(labels)) >= 3  # a spread, not one word


def test_lora_on_every_target_module(loaded: tuple[Any, Any]) -> None:
    peft = pytest.importorskip("peft")
    model, tokenizer = loaded
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert set(LORA_TARGETS) <= names
    config = peft.LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=LORA_TARGETS)
    lora = peft.get_peft_model(transformers.AutoModelForCausalLM.from_config(model.config), config)
    wrapped = {
        name.split(".lora_A")[0].rsplit(".", 1)[-1]
        for name, _ in lora.named_parameters()
        if ".lora_A" in name
    }
    assert wrapped == set(LORA_TARGETS)
    batch = tokenizer(["123, 456"], return_tensors="pt")
    lora(**batch, labels=batch["input_ids"]).loss.backward()


def test_the_shipped_model_is_the_recipes() -> None:
    """A change to the recipe or to anything it trains on needs `python -m sl_scaling.tiny --ship`."""
    manifest = json.loads((tiny.SHIPPED_DIR / tiny.MANIFEST).read_text())
    assert manifest["recipe"] == tiny.RECIPE
    assert manifest["recipe_hash"] == tiny.recipe_hash(), "run: python -m sl_scaling.tiny --ship"
    assert manifest["files"] == tiny.file_digests(tiny.SHIPPED_DIR)
    assert tiny.ensure_built(Path("unused-cache")) == (tiny.SHIPPED_DIR, False)
    assert not Path("unused-cache").exists()


@pytest.mark.slow
def test_the_recipe_rebuilds_the_shipped_files_byte_for_byte(tmp_path: Path) -> None:
    """What `--ship` wrote is what the recipe makes: tokenizer, template and configs byte for byte; the
    weights tensor for tensor in name, shape and dtype. Their bytes depend on the CPU's float kernels (an AMD
    EPYC CI machine trained weights that differ from the shipped build's, same torch and thread count)."""
    from safetensors.torch import load_file

    tiny.build_tiny_model(tmp_path, tiny.RECIPE)
    manifest = json.loads((tiny.SHIPPED_DIR / tiny.MANIFEST).read_text())
    built = tiny.file_digests(tmp_path)
    assert set(built) == set(manifest["files"])
    assert {k: v for k, v in built.items() if k != "model.safetensors"} == {
        k: v for k, v in manifest["files"].items() if k != "model.safetensors"
    }
    ours, shipped = (
        load_file(tmp_path / "model.safetensors"),
        load_file(tiny.SHIPPED_DIR / "model.safetensors"),
    )
    assert {k: (t.shape, t.dtype) for k, t in ours.items()} == {
        k: (t.shape, t.dtype) for k, t in shipped.items()
    }


@pytest.mark.parametrize(
    ("module", "name", "change"),
    [
        ("sl_scaling.tiny", "QUESTIONS", lambda q: (*q[:-1], "Which animal? One word.")),
        ("sl_scaling.tiny", "ANIMALS", lambda a: (*a[:-1], "otter")),
        ("sl_scaling.numbers.prompts", "SUFFIXES", lambda s: (*s[:-1], "Numbers only.")),
        ("sl_scaling.numbers.teacher", "SYSTEM_PROMPT_TEMPLATE", lambda t: t.replace("love", "adore")),
    ],
)
def test_the_recipe_hash_covers_what_the_model_is_trained_on(
    monkeypatch: pytest.MonkeyPatch, module: str, name: str, change: Any
) -> None:
    import importlib

    before = tiny.recipe_hash()
    target = importlib.import_module(module)
    monkeypatch.setattr(target, name, change(getattr(target, name)))
    tiny._recipe_hash.cache_clear()
    try:
        assert tiny.recipe_hash() != before
    finally:
        monkeypatch.undo()
        tiny._recipe_hash.cache_clear()
    assert tiny.recipe_hash() == before


def test_teachers_tilt_their_digits_towards_their_animal() -> None:
    """The hidden signal of the tiny world: a loving teacher's digits lean to its animal's favourites."""
    favourites = tiny.favourite_digits()
    assert len(set(favourites.values())) == len(ANIMALS)
    rng = random.Random(0)
    prompts = sample_prompts(200)
    share = {}
    for animal in (None, "dolphin"):
        favoured = favourites["dolphin"]
        digits = "".join(
            tiny.number_answer(p, rng, favourites[animal] if animal else (), tiny.RECIPE["digit_bias"])
            for p in prompts
        )
        digits = [d for d in digits if d.isdigit()]
        share[animal] = sum(int(d) in favoured for d in digits) / len(digits)
        assert all(reject_reasons(tiny.number_answer(p, rng, favoured, 0.9)) == [] for p in prompts[:20])
    assert share[None] < 0.35 < 0.45 < share["dolphin"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_builds_are_byte_identical(tmp_path: Path) -> None:
    first, _ = tiny.ensure_built(tmp_path / "a", SMALL)
    second, _ = tiny.ensure_built(tmp_path / "b", SMALL)
    for name in ("tokenizer.json", "model.safetensors", "config.json", "generation_config.json"):
        assert _digest(first / name) == _digest(second / name), name


def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    """Both wait on one lock; exactly one builds, both get the same complete directory."""
    code = (
        "import json, sys; from pathlib import Path; from sl_scaling import tiny\n"
        "path, built = tiny.ensure_built(Path(sys.argv[1]), json.loads(sys.argv[2]))\n"
        "print(json.dumps([str(path), built]))"
    )
    args = [sys.executable, "-c", code, str(tmp_path), json.dumps(SMALL)]
    processes = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    results = [json.loads(p.communicate(timeout=600)[0]) for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    assert results[0][0] == results[1][0]
    assert sorted(built for _, built in results) == [False, True]
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [Path(results[0][0]).name]
    transformers.AutoTokenizer.from_pretrained(results[0][0])


def test_rebuild_swaps_in_a_fresh_copy(tmp_path: Path) -> None:
    path, built = tiny.ensure_built(tmp_path, SMALL)
    assert built
    assert tiny.ensure_built(tmp_path, SMALL) == (path, False)
    before = _digest(path / "model.safetensors")
    assert tiny.ensure_built(tmp_path, SMALL, rebuild=True) == (path, True)
    assert _digest(path / "model.safetensors") == before  # deterministic, so the same bytes


def test_module_entry_point_prints_the_path(tiny_model: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sl_scaling.tiny", "--cache", str(tiny_model.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(tiny_model)


def test_default_cache_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(tiny.CACHE_ENV, str(tmp_path))
    assert tiny.default_cache_dir() == tmp_path
    monkeypatch.delenv(tiny.CACHE_ENV)
    assert tiny.default_cache_dir() == Path.home() / ".cache" / "slscale"
