"""Per-row seeded sampling (the math under vLLM's row sampler): the right distribution, and a row's text
independent of what else runs in the batch — simulated with vLLM's persistent-batch bookkeeping."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from sl_scaling.engines.row_sampler import (
    SEED_ARG,
    TEMPERATURE_ARG,
    RowBook,
    inverse_cdf_sample,
    row_uniforms,
)


def test_uniforms_depend_on_seed_and_position_only_and_are_uniform() -> None:
    seeds, positions = np.repeat(np.arange(200), 500), np.tile(np.arange(500), 200)
    u = row_uniforms(seeds, positions)
    assert np.array_equal(u, row_uniforms(seeds, positions))
    assert ((u > 0) & (u < 1)).all()
    assert len(np.unique(u)) == len(u)
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    expected = len(u) / 20
    assert ((counts - expected) ** 2 / expected).sum() < 43.8  # chi-square, 19 dof, p = 0.001
    # neighbouring seeds and positions are uncorrelated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01
    assert row_uniforms([7], [3])[0] == row_uniforms(np.array([7, 8]), np.array([3, 3]))[0]


def chi_square(tokens: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(tokens, minlength=len(probs)).double()
    expected = probs.double() * len(tokens)
    return float(((counts - expected) ** 2 / expected).sum())


def test_tokens_follow_the_temperature_scaled_softmax() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5, -3.0])
    n = 60_000
    uniforms = torch.from_numpy(row_uniforms(np.arange(n), np.zeros(n)))
    for temperature in (1.0, 0.5):
        tokens = inverse_cdf_sample(logits.expand(n, -1), uniforms, torch.full((n,), temperature))
        probs = torch.softmax(logits.double() / temperature, dim=-1)
        assert chi_square(tokens, probs) < 20.5  # 5 dof, p = 0.001
    assert chi_square(tokens, torch.softmax(logits.double(), dim=-1)) > 1000  # not the T=1 law


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
