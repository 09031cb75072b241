"""The grid at a glance, from the state DB: one row per (run, size, condition), control included.

Everything is read inside ONE read transaction, so a row never mixes two moments of a writer
(WAL lets the writers go on meanwhile). Nothing here writes to the DB.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sl_scaling.catalog import CONDITIONS, CONTROL, SIZES
from sl_scaling.grid import CONDITION_STAGES, CONTROL_STAGES, FILTER, GEN, STAGES, TRAIN
from sl_scaling.processes import alive
from sl_scaling.state import DONE, FAILED, INTERRUPTED, PENDING, RUNNING, StateStore

#: A running stage whose process is gone: shown apart from a clean `interrupted` so it stands out.
STALE = "stale"
STATES = (RUNNING, STALE, FAILED, INTERRUPTED, DONE, PENDING)


@dataclass(frozen=True)
class StatusRow:
    """What `slscale status` says about one job; `stage` is the stage the `state` is about."""

    run: int
    size: str
    condition: str
    state: str
    stage: str | None
    generated: int | None = None
    kept: int | None = None
    epochs_done: int = 0
    epochs_planned: int | None = None
    latest_epoch: int | None = None
    target_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    top_label: str | None = None
    top_share: float | None = None
    uploads_pending: int = 0
    uploads_done: int = 0
    error: str | None = None
    stages: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GridStatus:
    rows: list[StatusRow]
    events: list[dict[str, Any]]

    @property
    def empty(self) -> bool:
        return not self.rows

    def counts(self) -> dict[str, int]:
        """How many rows are in each state (only the states that occur)."""
        found = [row.state for row in self.rows]
        return {state: found.count(state) for state in STATES if state in found}

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [row.to_json() for row in self.rows],
            "counts": self.counts(),
            "events": self.events,
        }


def _sort_key(key: tuple[int, str, str]) -> tuple[int, int, int, str]:
    run, size, condition = key
    size_rank = SIZES.index(size) if size in SIZES else len(SIZES)
    order = (CONTROL, *CONDITIONS)
    condition_rank = order.index(condition) if condition in order else len(order)
    return (run, size_rank, condition_rank, condition)


def _current(
    stages: dict[str, dict[str, Any]], locks: dict[str, dict[str, Any]], required: tuple[str, ...]
) -> tuple[str, str | None, dict[str, str]]:
    """The row's state and the stage it is about: running > stale > failed > interrupted > pending > done."""
    statuses: dict[str, str] = {}
    for stage, record in stages.items():
        status = record["status"]
        if status == RUNNING and stage in locks and not alive(**locks[stage]):
            status = STALE
        statuses[stage] = status
    ordered = [stage for stage in STAGES if stage in statuses]
    for wanted in (RUNNING, STALE, FAILED, INTERRUPTED):
        hits = [stage for stage in ordered if statuses[stage] == wanted]
        if hits:
            return wanted, hits[-1], statuses
    missing = [stage for stage in required if statuses.get(stage) != DONE]
    if missing:
        return PENDING, missing[0], statuses
    return DONE, ordered[-1] if ordered else None, statuses


def _top(evaluation: dict[str, Any]) -> tuple[str | None, float | None]:
    counts: dict[str, int] = evaluation.get("counts") or {}
    n = evaluation.get("n") or 0
    if not counts or not n:
        return None, None
    label = max(counts, key=lambda name: counts[name])
    return label, counts[label] / n


def read_status(
    state: StateStore, *, sizes: Iterable[str] = (), runs: Iterable[int] = (), events: int = 8
) -> GridStatus:
    """The status of every job the DB knows, optionally only some sizes/runs, and the latest events."""
    size_filter, run_filter = set(sizes), set(runs)

    def wanted(row: sqlite3.Row) -> bool:
        return (not size_filter or row["size"] in size_filter) and (
            not run_filter or row["run"] in run_filter
        )

    with state.snapshot() as db:
        stage_rows = [r for r in db.execute("SELECT * FROM stages") if wanted(r)]
        epoch_rows = [r for r in db.execute("SELECT * FROM epochs ORDER BY epoch") if wanted(r)]
        upload_rows = [r for r in db.execute("SELECT * FROM uploads") if wanted(r)]
        lock_rows = [r for r in db.execute("SELECT * FROM locks") if wanted(r)]
        event_rows = db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (events,)).fetchall()

    jobs: dict[tuple[int, str, str], dict[str, Any]] = {}

    def job(row: sqlite3.Row) -> dict[str, Any]:
        key = (row["run"], row["size"], row["condition"])
        return jobs.setdefault(key, {"stages": {}, "epochs": [], "uploads": [], "locks": {}})

    for row in stage_rows:
        record = dict(row)
        for column in ("counts", "config"):
            record[column] = json.loads(record[column] or "{}")
        job(row)["stages"][row["stage"]] = record
    for row in epoch_rows:
        job(row)["epochs"].append(dict(row))
    for row in upload_rows:
        job(row)["uploads"].append(row["status"])
    for row in lock_rows:
        job(row)["locks"][row["stage"]] = {"host": row["host"], "pid": row["pid"]}

    rows = [_status_row(key, jobs[key]) for key in sorted(jobs, key=_sort_key)]
    return GridStatus(rows=rows, events=[dict(row) for row in reversed(event_rows)])


def _status_row(key: tuple[int, str, str], job: dict[str, Any]) -> StatusRow:
    run, size, condition = key
    stages = job["stages"]
    required = CONTROL_STAGES if condition == CONTROL else CONDITION_STAGES
    state, stage, statuses = _current(stages, job["locks"], required)
    evaluated = [e for e in job["epochs"] if e["n"]]
    latest = evaluated[-1] if evaluated else None
    evaluation = json.loads(latest["eval"]) if latest else {}
    top_label, top_share = _top(evaluation)
    train = stages.get(TRAIN, {})
    planned = train.get("config", {}).get("epochs")
    error = stages[stage]["error"] if stage in stages and state in (FAILED, INTERRUPTED) else None
    return StatusRow(
        run=run,
        size=size,
        condition=condition,
        state=state,
        stage=stage,
        generated=stages.get(GEN, {}).get("counts", {}).get("rows"),
        kept=stages.get(FILTER, {}).get("counts", {}).get("kept"),
        epochs_done=sum(1 for e in job["epochs"] if e["epoch"] > 0),
        epochs_planned=planned,
        latest_epoch=latest["epoch"] if latest else None,
        target_rate=latest["target_rate"] if latest else None,
        ci_low=latest["ci_low"] if latest else None,
        ci_high=latest["ci_high"] if latest else None,
        n=latest["n"] if latest else None,
        top_label=top_label,
        top_share=top_share,
        uploads_pending=job["uploads"].count(PENDING),
        uploads_done=job["uploads"].count(DONE),
        error=error,
        stages=statuses,
    )
