"""Where a killed training continues: the newest complete Trainer checkpoint not ahead of the DB.

The HF Trainer writes `checkpoint-<step>/` at every epoch's end (adapter, optimizer, scheduler, RNG
states, then `trainer_state.json` last), keeping only the latest. A checkpoint counts only if its
`trainer_state.json` parses and its epoch is one the DB has recorded (with every epoch before it):
anything else is a torn write or ran ahead of the records, and is removed so it cannot be picked up.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class Checkpoint:
    epoch: int
    path: Path


def complete_checkpoints(directory: Path) -> list[Checkpoint]:
    """Checkpoints whose trainer state is whole and sits exactly on an epoch boundary."""
    found = []
    for path in directory.glob("checkpoint-*"):
        try:
            epoch = float(json.loads((path / "trainer_state.json").read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if abs(epoch - round(epoch)) < 1e-6:
            found.append(Checkpoint(round(epoch), path))
    return sorted(found, key=lambda c: c.epoch)


def recorded_prefix(epochs: Iterable[int]) -> int:
    """The last epoch N such that epochs 1..N are all recorded."""
    done = set(epochs)
    last = 0
    while last + 1 in done:
        last += 1
    return last


def resume_point(directory: Path, recorded: Iterable[int]) -> Checkpoint | None:
    """The checkpoint to resume from (None: start afresh); every other checkpoint dir is removed."""
    last = recorded_prefix(recorded)
    usable = [c for c in complete_checkpoints(directory) if c.epoch <= last]
    chosen = usable[-1] if usable else None
    for path in directory.glob("checkpoint-*"):
        if chosen is None or path != chosen.path:
            shutil.rmtree(path, ignore_errors=True)
    return chosen
