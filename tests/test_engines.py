"""The HF engine on a small random Qwen2 model: padding, EOS, token counts, seeds, adapters, modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from sl_scaling.engines import choose_engine, open_engine
from sl_scaling.engines.base import GenerationRequest, Sampling
from sl_scaling.engines.chat import encode_chat
from sl_scaling.engines.hf import HFEngine, batch_seed
from sl_scaling.errors import OptionalDependencyError, UsageError

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
GREEDY = Sampling(temperature=0.0, max_new_tokens=12)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer Qwen2 with a byte-level BPE and a ChatML template, saved like a Hub model."""
    path = tmp_path_factory.mktemp("random-qwen2")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(["You love owls. 123, 456, 789. Return the numbers."] * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def chats(n: int) -> list[GenerationRequest]:
    """Prompts of different lengths, so a batch needs padding."""
    return [
        GenerationRequest(key=i, messages=[{"role": "user", "content": "123, " * (i + 1) + "go"}])
        for i in range(n)
    ]


def run(engine: HFEngine, requests: list[GenerationRequest], sampling: Sampling = GREEDY) -> dict:
    return {g.key: g for batch in engine.generate(requests, sampling) for g in batch}


def save_adapter(model_dir: Path, dest: Path, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) weights, so it visibly changes the model's output."""
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(20)
    peft_model.save_pretrained(dest)
    return dest


def test_left_padded_batches_match_unpadded_generation(random_model: Path) -> None:
    requests = chats(6)
    batched = run(HFEngine.load(str(random_model), batch_size=6), requests)
    single = run(HFEngine.load(str(random_model), batch_size=1), requests)
    assert {k: g.text for k, g in batched.items()} == {k: g.text for k, g in single.items()}
    assert {k: g.completion_tokens for k, g in batched.items()} == {
        k: g.completion_tokens for k, g in single.items()
    }


def test_prompt_tokens_exclude_padding_and_batches_are_length_sorted(random_model: Path) -> None:
    engine = HFEngine.load(str(random_model), batch_size=2)
    requests = list(reversed(chats(5)))
    batches = list(engine.generate(requests, GREEDY))
    assert [len(b) for b in batches] == [2, 2, 1]
    lengths = [g.prompt_tokens for batch in batches for g in batch]
    assert lengths == sorted(lengths)
    for batch in batches:
        for g in batch:
            assert g.prompt_tokens == len(encode_chat(engine.tokenizer, requests[4 - g.key].messages))


def greedy_tokens(engine: HFEngine, request: GenerationRequest) -> list[int]:
    """The raw greedy continuation of one unpadded prompt, with no end-of-turn token at all."""
    ids = torch.tensor([encode_chat(engine.tokenizer, request.messages)])
    out = engine.model.generate(
        ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12, eos_token_id=None
    )
    return out[0, ids.shape[1] :].tolist()


def test_each_row_stops_at_its_first_end_of_turn_token(random_model: Path) -> None:
    engine = HFEngine.load(str(random_model), batch_size=4)
    requests = chats(4)
    free = run(engine, requests)
    # Declare a greedy token of row 0 an end-of-turn token: that row must stop right there.
    tokens = greedy_tokens(engine, requests[0])
    cut = next(i for i in range(2, len(tokens)) if tokens[i] not in tokens[:i])
    engine.eos_ids = [*engine.eos_ids, tokens[cut]]
    stopped = run(engine, requests)
    assert stopped[0].completion_tokens == cut + 1
    assert stopped[0].text == engine.tokenizer.decode(tokens[:cut])
    for request in requests[1:]:
        row = greedy_tokens(engine, request)
        if tokens[cut] in row:
            assert stopped[request.key].completion_tokens == row.index(tokens[cut]) + 1
        else:
            assert stopped[request.key].text == free[request.key].text


def test_sampling_is_reproducible_per_seed(random_model: Path) -> None:
    engine = HFEngine.load(str(random_model), batch_size=3)
    requests = chats(6)
    sampling = Sampling(temperature=1.0, max_new_tokens=10, seed=7)
    first = {k: g.text for k, g in run(engine, requests, sampling).items()}
    assert first == {k: g.text for k, g in run(engine, requests, sampling).items()}
    other = {k: g.text for k, g in run(engine, requests, Sampling(max_new_tokens=10, seed=8)).items()}
    assert other != first
    assert batch_seed(7, [1, 2]) == batch_seed(7, [1, 2]) != batch_seed(7, [2, 1])


def test_generation_leaves_the_global_rng_and_training_mode_alone(random_model: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(random_model)
    engine = HFEngine.from_model(model, AutoTokenizer.from_pretrained(random_model))
    model.train()
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    run(engine, chats(2), Sampling(max_new_tokens=4, seed=1))
    assert torch.rand(1) == expected
    assert model.training


def test_adapters_share_one_base_and_base_requests_run_without_them(
    random_model: Path, tmp_path: Path
) -> None:
    first = str(save_adapter(random_model, tmp_path / "a", seed=1))
    second = str(save_adapter(random_model, tmp_path / "b", seed=2))
    requests = chats(3)
    base_only = run(HFEngine.load(str(random_model)), requests)
    alone = run(
        HFEngine.load(str(random_model)), [GenerationRequest(r.key, r.messages, first) for r in requests]
    )

    engine = HFEngine.load(str(random_model))
    mixed = [
        *(GenerationRequest(("base", r.key), r.messages) for r in requests),
        *(GenerationRequest(("a", r.key), r.messages, first) for r in requests),
        *(GenerationRequest(("b", r.key), r.messages, second) for r in requests),
    ]
    out = run(engine, mixed)
    assert isinstance(engine.model, PeftModel)
    assert set(engine.model.peft_config) == {"slscale_0", "slscale_1"}
    for r in requests:
        assert out[("base", r.key)].text == base_only[r.key].text
        assert out[("a", r.key)].text == alone[r.key].text
    assert [out[("a", r.key)].text for r in requests] != [out[("b", r.key)].text for r in requests]
    assert [out[("a", r.key)].text for r in requests] != [base_only[r.key].text for r in requests]


def test_from_model_runs_a_training_peft_model_as_it_is(random_model: Path, tmp_path: Path) -> None:
    adapter = str(save_adapter(random_model, tmp_path / "a", seed=1))
    tokenizer = AutoTokenizer.from_pretrained(random_model)
    trained = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(random_model), adapter, is_trainable=True
    )
    trained.train()
    engine = HFEngine.from_model(trained, tokenizer)
    as_is = run(engine, chats(3))
    expected = run(
        HFEngine.load(str(random_model)), [GenerationRequest(r.key, r.messages, adapter) for r in chats(3)]
    )
    assert {k: g.text for k, g in as_is.items()} == {k: g.text for k, g in expected.items()}
    assert trained.training
    assert any(p.requires_grad for n, p in trained.named_parameters() if "lora_" in n)


def test_choose_engine_says_why() -> None:
    assert choose_engine("hf")[0] == "hf"
    name, reason = choose_engine("auto")
    assert name == "hf" and "vLLM" in reason  # this CPU machine has no vLLM and no GPU
    with pytest.raises(OptionalDependencyError, match="pip install"):
        choose_engine("vllm")
    with pytest.raises(UsageError, match="valid: auto, hf, vllm"):
        choose_engine("tgi")


def test_open_engine_loads_the_hf_engine(random_model: Path) -> None:
    engine = open_engine("hf", str(random_model), batch_size=5)
    assert isinstance(engine, HFEngine) and engine.batch_size == 5 and engine.name == "hf"
    with pytest.raises(UsageError):
        open_engine("auto", str(random_model))


def test_resolve_model_checks_local_overrides(tmp_path: Path, tiny_model: Path) -> None:
    from sl_scaling.models import resolve_model
    from sl_scaling.settings import load_settings

    assert resolve_model(load_settings(), "tiny") == str(tiny_model)
    assert resolve_model(load_settings(model_ids={"3b": str(tmp_path)}), "3b") == str(tmp_path.resolve())
    with pytest.raises(UsageError, match="does not exist"):
        resolve_model(load_settings(model_ids={"3b": str(tmp_path / "missing")}), "3b")


def test_a_hub_model_must_be_cached_or_on_the_hub(hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found before any work, in seconds, with the fix named: not after minutes of download retries."""
    import time

    import huggingface_hub.constants
    from hub_stub import Repo

    from sl_scaling.errors import MissingPrerequisiteError
    from sl_scaling.models import resolve_model
    from sl_scaling.settings import load_settings

    with pytest.raises(
        MissingPrerequisiteError, match=r"has no model Qwen/Qwen2.5-7B-Instruct.*MODEL_IDS__7B"
    ):
        resolve_model(load_settings(), "7b")
    hub.repos[("model", "Qwen/Qwen2.5-7B-Instruct")] = Repo("Qwen/Qwen2.5-7B-Instruct", "model", False)
    assert resolve_model(load_settings(), "7b") == "Qwen/Qwen2.5-7B-Instruct"

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    with pytest.raises(MissingPrerequisiteError, match=r"cannot be reached.*or check the network"):
        resolve_model(load_settings(), "7b")
    assert time.monotonic() - started < 10
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(MissingPrerequisiteError, match="HF_HUB_OFFLINE"):
        resolve_model(load_settings(), "7b")


def test_cpu_helpers_generate_the_very_rows_of_one_process_in_its_order(tiny_model: Path) -> None:
    """Teacher generation on a CPU shares its batches with a helper process (`replicas`): the same batches,
    per-batch seeds and one thread each, so every row and the order they are yielded in are unchanged."""
    import os

    from sl_scaling.numbers import sample_prompts
    from sl_scaling.numbers.teacher import teacher_chat

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: no helper process")
    prompts = sample_prompts(12, 7)
    requests = [
        GenerationRequest((a, i), teacher_chat(a, p)) for a in ("dog", "owl") for i, p in enumerate(prompts)
    ]
    sampling = Sampling(temperature=1.0, max_new_tokens=24, seed=5)
    batches = {}
    for replicas in (1, 2):
        engine = open_engine("hf", str(tiny_model), batch_size=4, adapters=False, replicas=replicas)
        assert (engine.helpers is not None) == (replicas == 2)
        batches[replicas] = [
            [(g.key, g.text, g.completion_tokens) for g in b] for b in engine.generate(requests, sampling)
        ]
        engine.close()
    assert len(batches[1]) == 6 and batches[2] == batches[1]
