"""Per-row seeded sampling for vLLM, batched: one uniform per (row seed, output position).

vLLM's own per-request seeds give each request a `torch.Generator` and draw its noise in a Python loop,
one kernel per running request per step (`random_sample` in vllm/v1/sample/ops/topk_topp_sampler.py):
at 7b on the H200 that loop cost 40% of generation's speed. Here the randomness of a row's k-th token
is a counter-based hash of (row seed, k) — no state, so a row samples the same text whatever else is in
the batch, in whichever chunk or order — and the token is drawn by inverse CDF from the temperature-
scaled softmax in float64, for every row of the step at once. The vLLM logits processor
(`vllm_sampler.RowSeededSampler`) forces that token and the request runs greedy (temperature 0), so
vLLM's argmax returns it. Statistically this is exactly temperature sampling with no top-k/top-p.

This module is torch and numpy only: the math and the batch bookkeeping are tested on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: `SamplingParams.extra_args` keys that hand a request to the row sampler.
SEED_ARG = "slscale_row_seed"
TEMPERATURE_ARG = "slscale_temperature"
#: Rows per softmax/cumsum block: bounds the float64 scratch to ~0.3 GB at Qwen's 152k vocabulary.
BLOCK_ROWS = 256

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele et al. 2014): a bijection of uint64 whose outputs pass BigCrush."""
    x = (x + _GOLDEN).astype(np.uint64)
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def row_uniforms(seeds: Sequence[int] | np.ndarray, positions: Sequence[int] | np.ndarray) -> np.ndarray:
    """The uniform in (0, 1) that draws output token `position` of the row seeded `seed`.

    A function of the pair only (hash of the hashed seed plus the position), with 53 random bits."""
    with np.errstate(over="ignore"):
        keys = _splitmix64(_splitmix64(np.asarray(seeds, dtype=np.uint64)) + np.asarray(positions, np.uint64))
    return ((keys >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def inverse_cdf_sample(
    logits: torch.Tensor, uniforms: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """Token ids drawn from softmax(logits / temperature), row i by the uniform `uniforms[i]`.

    float64 softmax and cumulative sum, in blocks of BLOCK_ROWS rows; `temperature` is one value per row."""
    tokens = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    last = logits.shape[1] - 1
    for start in range(0, logits.shape[0], BLOCK_ROWS):
        rows = slice(start, start + BLOCK_ROWS)
        scaled = logits[rows].to(torch.float64) / temperature[rows].to(torch.float64).unsqueeze(1)
        cdf = torch.softmax(scaled, dim=-1).cumsum_(dim=-1)
        target = uniforms[rows].to(torch.float64).unsqueeze(1) * cdf[:, -1:]
        tokens[rows] = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=last)
    return tokens


@dataclass
class RowState:
    """A running request's seed and temperature, and its live list of output tokens (vLLM appends to
    it): the list's length is the position of the token being drawn."""

    seed: int
    temperature: float
    output_tokens: Sequence[int]


#: A request joining the batch, as vLLM's `BatchUpdate.added` gives it: (row, extra_args, outputs).
Added = tuple[int, dict | None, Sequence[int]]
#: A move within the batch: (from, to, swap?) — vLLM's `MovedRequest` with the direction as a bool.
Moved = tuple[int, int, bool]


@dataclass
class RowBook:
    """Which batch row holds which seeded request, kept in step with vLLM's persistent batch.

    vLLM reports changes as removed rows, then added rows, then moves (one-way or swaps), in that order."""

    rows: dict[int, RowState]

    def __init__(self) -> None:
        self.rows = {}

    def update(self, removed: Sequence[int], added: Sequence[Added], moved: Sequence[Moved]) -> None:
        for row in removed:
            self.rows.pop(row, None)
        for row, extra_args, outputs in added:
            args = extra_args or {}
            if SEED_ARG in args:
                self.rows[row] = RowState(int(args[SEED_ARG]), float(args.get(TEMPERATURE_ARG, 1.0)), outputs)
            else:
                self.rows.pop(row, None)  # an unseeded request took the row of a seeded one
        for a, b, swap in moved:
            first, second = self.rows.pop(a, None), self.rows.pop(b, None)
            if first is not None:
                self.rows[b] = first
            if swap and second is not None:
                self.rows[a] = second

    def draw(self, logits: torch.Tensor) -> torch.Tensor:
        """Force each seeded row's logits to its drawn token (0 there, -inf elsewhere); others untouched."""
        if not self.rows:
            return logits
        indices = sorted(row for row in self.rows if row < logits.shape[0])
        states = [self.rows[row] for row in indices]
        uniforms = row_uniforms([s.seed for s in states], [len(s.output_tokens) for s in states])
        device = logits.device
        index = torch.tensor(indices, dtype=torch.long, device=device)
        tokens = inverse_cdf_sample(
            logits.index_select(0, index),
            torch.from_numpy(uniforms).to(device),
            torch.tensor([s.temperature for s in states], dtype=torch.float64, device=device),
        )
        logits.index_fill_(0, index, float("-inf"))
        logits[index, tokens] = 0.0
        return logits
