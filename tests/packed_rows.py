"""Reading a shared-prefix micro-batch back as its rows (`training/packed.py:shared_prefix_layout`), for tests."""

from __future__ import annotations

import itertools
from typing import Any

from sl_scaling.training.packed import SHARED_PREFIX


def rows_with_prefix(batch: dict[str, Any], name: str = "input_ids") -> list[list[int]]:
    """Each row's `name` values (token ids, labels) with the shared prefix put back in front of the rows that lost it."""
    prefix = batch[SHARED_PREFIX]["prefix_slots"].shape[1]
    values, cumulative = batch[name].reshape(-1).tolist(), batch["cu_seq_lens_q"].tolist()
    return [
        values[:prefix] * (start > 0) + values[start:end] for start, end in itertools.pairwise(cumulative)
    ]
