"""The one reader of the evaluation files (`{condition}_eval.json`, found through `Layout`).

`summary` (all_results.json), `plot` and `report` all read results through here, and through its one
tidy table, so a file is found, validated and refused the same way everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sl_scaling.catalog import CONDITIONS, CONTROL, SIZES, Layout
from sl_scaling.errors import MalformedInputError
from sl_scaling.files import read_json

_STEM = re.compile(r"^(?P<condition>[a-z]+)(?:-run-(?P<run>\d+))?_eval$")


@dataclass(frozen=True)
class EvalFile:
    """One `{condition}_eval.json`: a model's evaluation after every epoch (epoch 0 for control)."""

    run: int
    size: str
    condition: str
    target: str | None
    model: str | None
    epochs: list[dict[str, Any]]
    path: Path


def grid_order(size: str, condition: str) -> tuple[int, int, str]:
    """Sizes in the catalog's order (largest first), then control, neutral and the animals."""
    order = (CONTROL, *CONDITIONS)
    return (
        SIZES.index(size) if size in SIZES else len(SIZES),
        order.index(condition) if condition in order else len(order),
        condition,
    )


def find_eval_files(layout: Layout, size: str) -> list[tuple[str, int, Path]]:
    """(condition, run, path) of every evaluation file of a size, whatever its run."""
    directory = layout.evaluations_dir(size)
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*_eval.json")):
        match = _STEM.match(path.stem)
        if match and match["condition"] in (CONTROL, *CONDITIONS):
            found.append((match["condition"], int(match["run"] or 1), path))
    return found


def read_eval_file(path: Path, size: str, condition: str, run: int) -> EvalFile:
    """One evaluation file, its epochs sorted; one that is not an evaluation file is refused by name."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("epochs"), list):
        raise MalformedInputError(f"{path}: not an evaluation file (no 'epochs' list); evaluate it again")
    for record in data["epochs"]:
        if not isinstance(record, dict) or type(record.get("epoch")) is not int:
            raise MalformedInputError(
                f"{path}: an epoch record is not an object with a whole-number 'epoch' ({str(record)[:60]}); "
                "evaluate it again"
            )
    epochs = sorted(data["epochs"], key=lambda record: record["epoch"])
    return EvalFile(run, size, condition, data.get("target"), data.get("model"), epochs, path)


def load_eval_files(layout: Layout, *, sizes: Iterable[str] = (), runs: Iterable[int] = ()) -> list[EvalFile]:
    """Every evaluation file under the workdir (optionally some sizes/runs), in grid order."""
    size_filter, run_filter = set(sizes), set(runs)
    found = []
    for size in SIZES:
        if size_filter and size not in size_filter:
            continue
        for condition, run, path in find_eval_files(layout, size):
            if not run_filter or run in run_filter:
                found.append(read_eval_file(path, size, condition, run))
    return sorted(found, key=lambda f: (f.run, *grid_order(f.size, f.condition)))


TIDY_COLUMNS = (
    "run", "size", "condition", "epoch", "evaluation", "animal", "share", "ci_low", "ci_high", "n", "count",
    "exact",
)  # fmt: skip
#: `evaluation` of a tidy row: the per-epoch evaluation, or the final (larger) one of a last epoch/control.
PER_EPOCH, FINAL = "per-epoch", "final"


def tidy_table(files: Iterable[EvalFile]) -> list[dict[str, Any]]:
    """The charts' one table: a row per (run, size, condition, epoch, evaluation, answer label) with its
    sampled share and CI, and the exact preference for that label (None where not scored).

    Every label the evaluation kept a share for is here: the 15 animals (zeros included) and
    whatever else the model answered. A last epoch (or the control) with a final evaluation has its rows
    twice: `evaluation` = "per-epoch" and "final".
    """
    rows = []
    for file in files:
        try:
            rows += _tidy_rows(file)
        except (KeyError, TypeError, AttributeError) as exc:
            raise MalformedInputError(
                f"{file.path}: an epoch has no readable shares ({exc}); evaluate it again"
            ) from None
    return rows


def _tidy_rows(file: EvalFile) -> list[dict[str, Any]]:
    rows = []
    for record in file.epochs:
        exact = (record.get("exact") or {}).get("probabilities") or {}
        sampled = [(PER_EPOCH, record)] + ([(FINAL, record["final"])] if record.get("final") else [])
        for evaluation, numbers in sampled:
            for label, share in numbers["shares"].items():
                rows.append(
                    {
                        "run": file.run,
                        "size": file.size,
                        "condition": file.condition,
                        "epoch": record["epoch"],
                        "evaluation": evaluation,
                        "animal": label,
                        "share": share["rate"],
                        "ci_low": share["ci_low"],
                        "ci_high": share["ci_high"],
                        "n": numbers["n"],
                        "count": share["count"],
                        "exact": exact.get(label),
                    }
                )
    return rows
