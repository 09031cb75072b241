"""Per-row seeded sampling for vLLM in one batch per step (opt-in: `VLLMOptions.row_sampler`).

vLLM's own per-request seeds give each request a `torch.Generator` and draw its noise in a Python loop,
one kernel launch per running request per step (`random_sample` in vllm/v1/sample/ops/topk_topp_sampler.py):
at 7b on the H200 generation runs at 14.1k tokens/s with them and 23.6k without (benchmarks/README.md).

Here the token is drawn by the exponential race vLLM itself uses — argmax over the vocabulary of
logits / T + Gumbel noise, i.e. argmax p / q with q ~ Exp(1) — but the noise of token j at output position k of
the row seeded s is a counter-based hash of (s, k, j): no generator state, so a row samples the same text
whatever else is in the batch, and every row of a step is drawn at once. The race, unlike an inverse-CDF draw,
changes its winner only when two scores are within the kernels' rounding, so bf16 differences between batch
mixes rarely change a token (the first version, an inverse CDF, lost that: benchmarks/README.md). The vLLM logits
processor (`vllm_sampler.RowSeededSampler`) forces the drawn token and the request runs greedy (temperature 0),
so vLLM's argmax returns it. Statistically this is exactly temperature sampling with no top-k/top-p.

This module is torch only: the math and the batch bookkeeping are tested on CPU. Off by default
until measured faster and batch-independent on the GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

#: `SamplingParams.extra_args` keys that hand a request to the row sampler.
SEED_ARG = "slscale_row_seed"
TEMPERATURE_ARG = "slscale_temperature"
#: Rows per block of noise: bounds the int64/float64 scratch to a few hundred MB at a 152k vocabulary.
BLOCK_ROWS = 256

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _signed(value: int) -> int:
    """A uint64 constant as the int64 with the same bits (torch has no uint64 arithmetic)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's `>>` on int64 is arithmetic: it copies the sign bit)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 (Steele et al. 2014) on int64 tensors, wrapping as uint64 does: a bijection whose
    outputs pass BigCrush, so consecutive counters give independent-looking bits."""
    x = x + _signed(_GOLDEN)
    x = (x ^ _shift_right(x, 30)) * _signed(_MIX1)
    x = (x ^ _shift_right(x, 27)) * _signed(_MIX2)
    return x ^ _shift_right(x, 31)


def row_keys(seeds: Sequence[int], positions: Sequence[int]) -> torch.Tensor:
    """One int64 key per (row seed, output position): the counter base of that draw's noise."""
    seeds_t = torch.tensor([_signed(s % (1 << 64)) for s in seeds], dtype=torch.int64)
    return splitmix64(splitmix64(seeds_t) + torch.tensor(list(positions), dtype=torch.int64))


def gumbel_noise(keys: torch.Tensor, vocab: int) -> torch.Tensor:
    """Gumbel(0, 1) noise, float64, shape (rows, vocab): entry (i, j) is a function of (keys[i], j) only."""
    token = torch.arange(vocab, dtype=torch.int64, device=keys.device)
    bits = splitmix64(keys.unsqueeze(1) ^ (token * _signed(_MIX2)).unsqueeze(0))
    uniform = (_shift_right(bits, 11).to(torch.float64) + 0.5) * 2.0**-53  # in (0, 1), 53 random bits
    return -torch.log(-torch.log(uniform))


def race_block(logits: torch.Tensor, keys: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Token ids: argmax of logits / temperature + the rows' Gumbel noise (a draw from the softmax).

    Elementwise work and one reduction: the unit `torch.compile` fuses on a GPU (vllm_sampler.py)."""
    scaled = logits.to(torch.float64) / temperature.to(torch.float64).unsqueeze(1)
    return (scaled + gumbel_noise(keys, logits.shape[1])).argmax(dim=1)


RaceBlock = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def race_sample(
    logits: torch.Tensor, keys: torch.Tensor, temperature: torch.Tensor, block: RaceBlock = race_block
) -> torch.Tensor:
    """`race_block` over BLOCK_ROWS rows at a time; `keys` and `temperature` have one value per row."""
    tokens = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    for start in range(0, logits.shape[0], BLOCK_ROWS):
        rows = slice(start, start + BLOCK_ROWS)
        tokens[rows] = block(logits[rows], keys[rows], temperature[rows])
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


class RowBook:
    """Which batch row holds which seeded request, kept in step with vLLM's persistent batch.

    vLLM reports changes as removed rows, then added rows, then moves (one-way or swaps), in that order."""

    def __init__(self, block: RaceBlock = race_block) -> None:
        self.rows: dict[int, RowState] = {}
        self.block = block

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
        device = logits.device
        keys = row_keys([s.seed for s in states], [len(s.output_tokens) for s in states]).to(device)
        index = torch.tensor(indices, dtype=torch.long, device=device)
        temperature = torch.tensor([s.temperature for s in states], dtype=torch.float64, device=device)
        tokens = race_sample(logits.index_select(0, index), keys, temperature, self.block)
        logits.index_fill_(0, index, float("-inf"))
        logits[index, tokens] = 0.0
        return logits
