"""The exact preference on the tiny model: the cached two-pass scoring against a plain full forward pass,
the spellings against the parser, and the measure against sampling."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sl_scaling.catalog import ANIMALS
from sl_scaling.engines.base import WordScoringRequest
from sl_scaling.engines.chat import encode_chat, word_ends, word_tokens
from sl_scaling.engines.hf import HFEngine
from sl_scaling.engines.vllm import ScoredWord, scored_words, word_probability
from sl_scaling.evaluation.exact import exact_preference, exact_requests, spellings
from sl_scaling.evaluation.parsing import parse_answer
from sl_scaling.evaluation.questions import QUESTIONS
from sl_scaling.evaluation.runner import evaluate


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> HFEngine:
    return HFEngine.load(str(tiny_model), device="cpu", batch_size=16)


def full_pass_probability(engine: HFEngine, question: str, word: str) -> float:
    """P(first word = word) from one plain forward pass over chat + word: no cache, no padding."""
    chat = encode_chat(engine.tokenizer, [{"role": "user", "content": question}])
    ids = list(word_tokens(engine.tokenizer, word))
    with torch.no_grad():
        logits = engine.model(input_ids=torch.tensor([chat + ids])).logits[0].float().log_softmax(-1)
    logp = sum(logits[len(chat) - 1 + j, token].item() for j, token in enumerate(ids))
    ends = torch.tensor(word_ends(engine.tokenizer))
    following = logits[len(chat) - 1 + len(ids), : len(ends)]
    return float(torch.tensor(logp).exp() * following[ends].exp().sum())


def test_every_spelling_parses_to_its_animal() -> None:
    for animal in ANIMALS:
        forms = spellings(animal)
        assert len(set(forms)) == 4 and all(parse_answer(f"{form}.") == animal for form in forms)
    assert spellings("wolf") == ("wolf", "Wolf", "wolves", "Wolves")


def test_cached_scoring_equals_a_full_forward_pass(engine: HFEngine) -> None:
    words = tuple(w for animal in ("dog", "phoenix", "elephant", "wolf") for w in spellings(animal))
    assert any(len(word_tokens(engine.tokenizer, w)) > 1 for w in words)  # multi-token words are covered
    questions = QUESTIONS[:5]  # prompts of different lengths: left padding is exercised
    requests = [
        WordScoringRequest(key=i, messages=[{"role": "user", "content": q}], words=words)
        for i, q in enumerate(questions)
    ]
    scored = engine.word_probabilities(requests)
    for i, question in enumerate(questions):
        expected = [full_pass_probability(engine, question, w) for w in words]
        assert scored[i] == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_words_are_tokenized_once_per_engine_and_score_as_uncached(
    engine: HFEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 60 spellings are tokenized for the first chunk only; every later chunk's probabilities are
    exactly (not approximately) those it gets with nothing cached."""
    import sl_scaling.engines.hf as hf

    calls: list[str] = []

    def counted(tokenizer: object, word: str) -> tuple[int, ...]:
        calls.append(word)
        return word_tokens(tokenizer, word)

    monkeypatch.setattr(hf, "word_tokens", counted)
    requests = exact_requests()[:4]  # 60 words each ≥ the fixture's batch of 16: one chunk per request
    engine._word_plans.clear()
    together = engine.word_probabilities(requests)
    assert len(calls) == len(requests[0].words)
    for request in requests:
        engine._word_plans.clear()
        assert engine.word_probabilities([request])[request.key] == together[request.key]


def test_exact_preference_is_the_expected_sampled_rate(engine: HFEngine) -> None:
    exact = exact_preference(engine, target="dog")
    total = sum(exact.probabilities.values())
    assert 0 < total <= 1 + 1e-6 and exact.other == pytest.approx(1 - total, abs=1e-6)
    assert exact.target_probability == exact.probabilities["dog"]
    assert len(exact.per_question) == 50 and all(len(row) == 15 for row in exact.per_question)
    assert exact_preference(engine, target="dog") == exact  # no sampling: the same to the last digit
    # Sampled labels agree with it within sampling error (a 4-sigma band over 2,000 answers).
    sampled = evaluate(engine, target="dog", samples=2_000, seed=5)
    for animal in ANIMALS:
        p = exact.probabilities[animal]
        tolerance = 4 * (max(p * (1 - p), 1e-4) / sampled.n) ** 0.5
        assert abs(sampled.shares[animal].rate - p) <= tolerance, animal


def test_vllm_scoring_reads_prompt_logprobs_and_the_word_end_mass(engine: HFEngine) -> None:
    """The vLLM path up to the GPU call: prompts are chat + word; the result combines vLLM's outputs."""
    request = WordScoringRequest(
        key="q", messages=[{"role": "user", "content": QUESTIONS[0]}], words=("Dog",)
    )
    (item,) = scored_words([request], engine.tokenizer)
    dog = word_tokens(engine.tokenizer, "Dog")
    assert item.prompt_ids[item.start :] == list(dog)
    assert item.prompt_ids[: item.start] == encode_chat(engine.tokenizer, request.messages)
    ends = word_ends(engine.tokenizer)
    period, letter = engine.tokenizer.encode(".")[0], next(i for i, e in enumerate(ends) if not e)
    prompt_logprobs = [None] * item.start + [{t: SimpleNamespace(logprob=-0.5)} for t in dog]
    following = {period: SimpleNamespace(logprob=-1.0), letter: SimpleNamespace(logprob=-0.1)}
    output = SimpleNamespace(prompt_logprobs=prompt_logprobs, outputs=[SimpleNamespace(logprobs=[following])])
    expected = torch.tensor(-0.5 * len(dog)).exp().item() * torch.tensor(-1.0).exp().item()
    assert word_probability(ScoredWord(request, item.prompt_ids, item.start), output, ends) == pytest.approx(
        expected
    )
