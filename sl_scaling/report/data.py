"""The report's view of the evaluation files (read by `results.py`): one record of answers per model and epoch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sl_scaling.catalog import ANIMALS, CONTROL, NEUTRAL, Layout
from sl_scaling.charts.palette import OTHERS
from sl_scaling.errors import MalformedInputError
from sl_scaling.report.stats import Answers
from sl_scaling.results import EvalFile, load_eval_files, tidy_table

#: Columns of every share matrix: the 15 animals, then everything else pooled.
LABELS: tuple[str, ...] = (*ANIMALS, OTHERS)
#: Rows of the confusion matrix: the base model, the neutral student, the 15 animal students.
ROWS: tuple[str, ...] = (CONTROL, NEUTRAL, *ANIMALS)
_LABEL_INDEX = {label: i for i, label in enumerate(ANIMALS)}


def label_index(label: str) -> int:
    return _LABEL_INDEX.get(label, len(ANIMALS))


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation of one model at one epoch (control: epoch 0): the final evaluation's answers where
    that epoch has one (`final`), else the per-epoch ones; `exact` is the exact preference over LABELS
    (the 15 animals, then any other first word), None where it was not scored."""

    run: int
    size: str
    condition: str
    epoch: int
    answers: Answers
    final: bool = False
    exact: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.answers.n

    @property
    def counts(self) -> np.ndarray:
        return self.answers.counts(len(LABELS))

    @property
    def shares(self) -> np.ndarray:
        return self.counts / self.n


Key = tuple[int, str, str, int]


@dataclass
class Grid:
    """Every evaluation record found, keyed by (run, size, condition, epoch), and the files' tidy table
    (`results.tidy_table`, the raw numbers behind report.json)."""

    records: dict[Key, EvalRecord]
    tidy: list[dict[str, Any]]

    def get(self, run: int, size: str, condition: str, epoch: int) -> EvalRecord | None:
        return self.records.get((run, size, condition, epoch))

    def runs(self, size: str) -> list[int]:
        return sorted({run for run, s, _, _ in self.records if s == size})

    def epochs(self, size: str, condition: str, run: int) -> list[int]:
        return sorted(e for r, s, c, e in self.records if (r, s, c) == (run, size, condition))

    def control(self, size: str, run: int) -> EvalRecord | None:
        """The base model's evaluation (its last record, normally the only one, epoch 0)."""
        epochs = self.epochs(size, CONTROL, run)
        return self.records[(run, size, CONTROL, epochs[-1])] if epochs else None


def _answers(path: Path, record: dict[str, Any]) -> Answers:
    try:
        answers = record["answers"]
        questions = np.array([int(a["question_index"]) for a in answers], dtype=np.int64)
        labels = np.array([label_index(a["label"]) for a in answers], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedInputError(
            f"{path}: epoch {record.get('epoch')} has no readable 'answers' ({exc}); evaluate it again"
        ) from None
    return Answers(questions=questions, labels=labels)


def _records(file: EvalFile) -> list[EvalRecord]:
    records = []
    for record in file.epochs:
        final = record.get("final")
        answers = _answers(file.path, final or record)
        if answers.n == 0:
            continue  # an evaluation with no answer says nothing; it is reported missing
        epoch = int(record.get("epoch", 0))
        records.append(
            EvalRecord(
                file.run,
                file.size,
                file.condition,
                epoch,
                answers,
                final=bool(final),
                exact=_exact(record.get("exact")),
            )
        )
    return records


def _exact(exact: dict[str, Any] | None) -> np.ndarray | None:
    if not exact or not isinstance(exact.get("probabilities"), dict):
        return None
    probabilities = exact["probabilities"]
    return np.array(
        [float(probabilities.get(a, np.nan)) for a in ANIMALS] + [float(exact.get("other", np.nan))]
    )


def load_grid(layout: Layout, sizes: list[str], runs: list[int] | None = None) -> Grid:
    """Read the evaluation files of `sizes` (all runs found, or only `runs`); absent files are skipped."""
    files = load_eval_files(layout, sizes=sizes, runs=runs or ()) if sizes else []
    records = {(r.run, r.size, r.condition, r.epoch): r for file in files for r in _records(file)}
    return Grid(records, tidy_table(files))
