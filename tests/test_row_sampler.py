"""Per-row seeded sampling (the math under vLLM's opt-in row sampler): the right distribution, robust to kernel
rounding, and a row's text independent of what else runs in the batch — with vLLM's persistent-batch bookkeeping."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from sl_scaling.engines.row_sampler import (
    SEED_ARG,
    TEMPERATURE_ARG,
    RowBook,
    gumbel_noise,
    race_sample,
    row_keys,
)


def test_noise_is_gumbel_and_a_function_of_key_and_token_only() -> None:
    keys = row_keys(range(300), [0] * 300)
    assert torch.equal(keys, row_keys(range(300), [0] * 300))
    assert len(set(keys.tolist())) == 300 and not torch.equal(keys, row_keys(range(300), [1] * 300))
    noise = gumbel_noise(keys, 1000)
    assert torch.equal(noise[:, :10], gumbel_noise(keys, 10))  # the vocabulary's size changes nothing
    assert torch.equal(noise[5], gumbel_noise(keys[5:6], 1000)[0])  # nor the other rows
    assert abs(noise.mean().item() - 0.5772) < 0.01 and abs(noise.var().item() - math.pi**2 / 6) < 0.03
    uniforms = torch.exp(-torch.exp(-noise)).flatten()  # back to the uniforms: evenly spread
    counts = torch.histc(uniforms, bins=20, min=0, max=1)
    expected = len(uniforms) / 20
    assert ((counts - expected) ** 2 / expected).sum().item() < 43.8  # chi-square, 19 dof, p = 0.001
    assert abs(torch.corrcoef(torch.stack([noise[:, :-1].flatten(), noise[:, 1:].flatten()]))[0, 1]) < 0.01


def chi_square(tokens: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(tokens, minlength=len(probs)).double()
    expected = probs.double() * len(tokens)
    return float(((counts - expected) ** 2 / expected).sum())


def test_tokens_follow_the_temperature_scaled_softmax() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5, -3.0])
    n = 60_000
    keys = row_keys(range(n), [0] * n)
    for temperature in (1.0, 0.5):
        tokens = race_sample(logits.expand(n, -1), keys, torch.full((n,), temperature))
        probs = torch.softmax(logits.double() / temperature, dim=-1)
        assert chi_square(tokens, probs) < 20.5  # 5 dof, p = 0.001
    assert chi_square(tokens, torch.softmax(logits.double(), dim=-1)) > 1000  # not the T=1 law


def test_rounding_differences_between_batch_mixes_rarely_change_a_token() -> None:
    """A random model spreads its mass over the whole vocabulary; two batch mixes differ by kernel rounding.
    The race keeps its winner (an inverse-CDF draw, the first version, kept 90.5% on the same test)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 50_000, generator=generator, dtype=torch.float64) * 0.5
    rounding = torch.randn(200, 50_000, generator=generator, dtype=torch.float64) * 1e-3
    keys, ones = row_keys(range(200), [3] * 200), torch.ones(200)
    same = race_sample(logits, keys, ones) == race_sample(logits + rounding, keys, ones)
    assert same.double().mean().item() >= 0.99


def toy_logits(seed_prefix: tuple[int, ...], vocab: int = 40) -> torch.Tensor:
    """A stand-in model: logits that depend on the row's prompt and the tokens it produced so far."""
    digest = hashlib.sha256(repr(seed_prefix).encode()).digest()
    return torch.from_numpy(np.frombuffer(digest * 5, dtype=np.uint8)[:vocab].astype(np.float32) / 40)


def run_batch(requests: dict[str, int], order: list[str], max_rows: int, steps: int) -> dict[str, list[int]]:
    """Decode `steps` tokens per request the way vLLM's persistent batch does: requests join free rows,
    leave when done, the last row moves into each hole, rows swap; the book follows the same updates."""
    book, rows, outputs = RowBook(), [], {key: [] for key in requests}
    waiting, removed = list(order), []
    while waiting or rows:
        added = []
        while waiting and len(rows) < max_rows:
            key = waiting.pop(0)
            rows.append(key)
            added.append((len(rows) - 1, {SEED_ARG: requests[key], TEMPERATURE_ARG: 1.0}, outputs[key]))
        book.update(removed, added, [])
        logits = torch.stack([toy_logits((requests[k], *outputs[k])) for k in rows])
        for key, token in zip(rows, book.draw(logits).argmax(dim=1).tolist(), strict=True):
            outputs[key].append(token)
        removed, moved = [], []
        for index in reversed(range(len(rows))):
            if len(outputs[rows[index]]) == steps:
                removed.append(index)
                last = len(rows) - 1
                if index != last:
                    moved.append((last, index, False))
                    rows[index] = rows[last]
                rows.pop()
        if len(rows) > 1 and len(outputs[rows[0]]) % 3 == 0:  # vLLM also swaps rows (it sorts its batch)
            rows[0], rows[1] = rows[1], rows[0]
            moved.append((0, 1, True))
        book.update(removed, [], moved)
        removed = []
    return outputs


def test_a_rows_tokens_do_not_depend_on_the_batch_it_runs_in() -> None:
    requests = {f"r{i}": 1000 + i for i in range(23)}
    alone = {key: run_batch({key: seed}, [key], 1, 12)[key] for key, seed in requests.items()}
    in_batches = run_batch(requests, sorted(requests), 5, 12)
    reordered = run_batch(requests, sorted(requests, reverse=True), 8, 12)
    assert alone == in_batches == reordered
    assert len({tuple(tokens) for tokens in alone.values()}) == len(requests)


def test_unseeded_rows_are_left_to_vllm() -> None:
    book = RowBook()
    book.update([], [(0, None, []), (1, {SEED_ARG: 5}, [])], [])
    logits = torch.randn(2, 10)
    original = logits.clone()
    drawn = book.draw(logits)
    assert torch.equal(drawn[0], original[0])
    assert torch.isinf(drawn[1]).sum() == 9 and drawn[1].max() == 0
    book.update([], [(1, {}, [])], [])  # an unseeded request took row 1
    assert book.rows == {}
