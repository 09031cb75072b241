"""Trainings sharing the GPU (the local executor's shared jobs), on the lent H200."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_side_by_side import assert_same_training, train

from sl_scaling.bench import shapes

pytestmark = pytest.mark.gpu


@pytest.fixture
def small_qwen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small random-weight Qwen2 with the bench's Qwen-like tokenizer, standing in for `tiny` (whose
    build takes minutes of CPU the GPU machine is better spent on)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(
        vocab_size=shapes.VOCAB_SIZE,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=256,
        tie_word_embeddings=True,
        bos_token_id=shapes.ENDOFTEXT,
        eos_token_id=shapes.IM_END,
        pad_token_id=shapes.ENDOFTEXT,
    )
    directory = tmp_path / "small-qwen"
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    shapes.bench_tokenizer().save_pretrained(directory)
    monkeypatch.setenv("SLSCALE_MODEL_IDS__TINY", str(directory))
    return directory


def test_a_condition_trained_beside_others_matches_it_trained_alone_on_the_gpu(
    tmp_path: Path, small_qwen: Path
) -> None:
    alone = train(tmp_path / "alone", ("dolphin",), gpus=1)["dolphin"]
    three = train(tmp_path / "beside", ("dolphin", "eagle", "wolf"), gpus=1 / 3)
    # Same rows, loss and seeds; GPU kernels may differ from run to run in the last bits only.
    assert_same_training(alone, three["dolphin"], rtol=1e-3, atol=1e-5)
    stages = [three[c]["stage"] for c in ("dolphin", "eagle", "wolf")]
    assert max(s.started_at for s in stages) < min(s.finished_at for s in stages)  # all three at once
