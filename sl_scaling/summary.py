"""Results, gathered: the evaluation files (read by `results.py`) + the DB → `all_results.json`; the lifts.

The evaluation files are the source of truth for results; the DB adds what the files do not
hold (rows generated/kept, epochs planned, train loss and Hub repos of every epoch) and any
evaluation it recorded whose file is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sl_scaling.catalog import ANIMALS, CONTROL, EXPERIMENT, SIZE_PARAMS_B, Layout
from sl_scaling.evaluation.records import describe_answers
from sl_scaling.files import atomic_write_json
from sl_scaling.results import FINAL, PER_EPOCH, grid_order, load_eval_files, tidy_table
from sl_scaling.state import DONE, StateStore, now

#: Per-epoch fields copied into the summary (the raw answers stay in the evaluation files).
EPOCH_FIELDS = (
    "epoch",
    "n",
    "target",
    "target_rate",
    "ci_low",
    "ci_high",
    "ci_method",
    "substring_rate",
    "seed",
    "exact",
    "final",
    "counts",
    "distribution",
    "shares",
    "train_loss",
    "adapter",
    "evaluated_at",
)


def _db_jobs(state: StateStore) -> dict[tuple[int, str, str], dict[str, Any]]:
    """What the DB knows per job: data counts, epochs planned, every epoch's loss/eval and Hub repos."""
    jobs: dict[tuple[int, str, str], dict[str, Any]] = {}

    def job(run: int, size: str, condition: str) -> dict[str, Any]:
        return jobs.setdefault((run, size, condition), {"data": {}, "epochs": {}, "repos": {}})

    with state.snapshot():  # one consistent view, even while a run goes on
        stages = state.stages()
        epochs = state.all_epochs()
        uploads = state.uploads(DONE)
    for stage in stages:
        entry = job(stage.key.run, stage.key.size, stage.key.condition)
        if stage.stage == "gen" and "rows" in stage.counts:
            entry["data"]["generated"] = stage.counts["rows"]
        elif stage.stage == "filter":
            entry["data"].update(
                {k: stage.counts[k] for k in ("valid", "kept", "reasons") if k in stage.counts}
            )
        elif stage.stage == "train" and "epochs" in stage.config:
            entry["epochs_planned"] = stage.config["epochs"]
    for epoch in epochs:
        job(epoch.key.run, epoch.key.size, epoch.key.condition)["epochs"][epoch.epoch] = epoch
    for upload in uploads:
        repos = job(upload.key.run, upload.key.size, upload.key.condition)["repos"]
        if upload.kind == "dataset":
            repos["dataset"] = upload.repo_id
        elif upload.kind == "final":
            repos["final"] = upload.repo_id
        else:
            repos.setdefault("epochs", {})[str(upload.epoch)] = upload.repo_id
    return jobs


def _epoch_entry(record: dict[str, Any], db_epoch: Any) -> dict[str, Any]:
    entry = {name: record.get(name) for name in EPOCH_FIELDS}
    if entry["final"]:  # its raw answers stay in the evaluation file, like the per-epoch ones
        entry["final"] = {k: v for k, v in entry["final"].items() if k != "answers"}
    if entry["train_loss"] is None and db_epoch is not None:
        entry["train_loss"] = db_epoch.train_loss
    return entry


def collect_results(layout: Layout, state: StateStore) -> dict[str, Any]:
    """Everything measured so far: per (run, size, condition) its data counts, Hub repos and every epoch."""
    files = {(f.run, f.size, f.condition): f for f in load_eval_files(layout)}
    db = _db_jobs(state)
    results = []
    for key in sorted(set(files) | set(db), key=lambda k: (k[0], *grid_order(k[1], k[2]))):
        run, size, condition = key
        file, job = files.get(key), db.get(key, {"data": {}, "epochs": {}, "repos": {}})
        records = {r["epoch"]: r for r in (file.epochs if file else [])}
        for number, epoch in job["epochs"].items():  # evaluated in the DB but not (yet) in a file
            if number not in records and epoch.eval.get("shares"):
                records[number] = {"epoch": number, **epoch.eval, "adapter": epoch.adapter_path}
        entry = {
            "run": run,
            "size": size,
            "condition": condition,
            "target": condition if condition in ANIMALS else None,
            "model": file.model if file else None,
            "data": job["data"],
            "epochs_planned": job.get("epochs_planned"),
            "hub": job["repos"],
            "epochs": [_epoch_entry(records[n], job["epochs"].get(n)) for n in sorted(records)],
        }
        results.append(entry)
    chosen = at_epoch(tidy_table(files.values()))[0]
    lifts = lift_rows(chosen)
    return {
        "experiment": EXPERIMENT,
        "generated_at": now(),
        "lift_from": describe_evaluation(chosen),
        "results": results,
        "lift": lifts,
        "mean_lift": mean_lifts(lifts),
    }


def at_epoch(
    rows: Iterable[dict[str, Any]], epoch: int | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Tidy rows of one evaluation per model: at `epoch`, or each model's last one when None (control: its
    only one); the final evaluation where that epoch has one, else the per-epoch one.

    Also returns what is missing: models that were not evaluated at the asked epoch.
    """
    rows = list(rows)
    available: dict[tuple[int, str, str], set[int]] = {}
    finals: set[tuple[int, str, str, int]] = set()
    for row in rows:
        available.setdefault((row["run"], row["size"], row["condition"]), set()).add(row["epoch"])
        if row["evaluation"] == FINAL:
            finals.add((row["run"], row["size"], row["condition"], row["epoch"]))
    chosen, missing = {}, []
    for key, epochs in available.items():
        if epoch is None or key[2] == CONTROL:
            chosen[key] = max(epochs)
        elif epoch in epochs:
            chosen[key] = epoch
        else:
            run, size, condition = key
            suffix = "" if run == 1 else f" (run {run})"
            missing.append(f"{size}/{condition}{suffix}: epoch {epoch} not evaluated (latest {max(epochs)})")
    kept = [
        row
        for row in rows
        if chosen.get(model := (row["run"], row["size"], row["condition"])) == row["epoch"]
        and row["evaluation"] == (FINAL if (*model, row["epoch"]) in finals else PER_EPOCH)
    ]
    return kept, missing


def describe_evaluation(rows: Iterable[dict[str, Any]]) -> str:
    """Which evaluation some chosen rows (see `at_epoch`) come from, for chart titles and the report."""
    rows = list(rows)
    return describe_answers(
        [row["n"] for row in rows if row["evaluation"] == FINAL],
        [row["n"] for row in rows if row["evaluation"] == PER_EPOCH],
    )


def lift_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (run, size, animal): the animal-FT student's rate for its animal minus the neutral-FT student's.

    `rows` must hold one epoch per model (see `at_epoch`); animals without a neutral student are skipped.
    """
    share = {(r["run"], r["size"], r["condition"], r["animal"]): r for r in rows}
    lifts = []
    for (run, size, condition, animal), row in share.items():
        neutral = share.get((run, size, "neutral", animal))
        if condition != animal or condition not in ANIMALS or neutral is None:
            continue
        lifts.append(
            {
                "run": run,
                "size": size,
                "animal": animal,
                "epoch": row["epoch"],
                "params_b": SIZE_PARAMS_B[size],
                "evaluation": row["evaluation"],
                "animal_ft": row["share"],
                "neutral_ft": neutral["share"],
                "lift": row["share"] - neutral["share"],
                "exact_lift": None
                if row["exact"] is None or neutral["exact"] is None
                else row["exact"] - neutral["exact"],
            }
        )
    return sorted(lifts, key=lambda r: (r["run"], grid_order(r["size"], r["animal"])))


def mean_lifts(lifts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (run, size): the lift averaged over the animals that have one, and how many they are."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in lifts:
        groups.setdefault((row["run"], row["size"]), []).append(row)
    means = []
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], grid_order(item[0][1], "")))
    for (run, size), group in ordered:
        exact = [row["exact_lift"] for row in group if row["exact_lift"] is not None]
        means.append(
            {
                "run": run,
                "size": size,
                "params_b": SIZE_PARAMS_B[size],
                "mean_lift": sum(row["lift"] for row in group) / len(group),
                "mean_exact_lift": sum(exact) / len(exact) if exact else None,
                "animals": len(group),
            }
        )
    return means


def write_summary(layout: Layout, state: StateStore | None = None) -> dict[str, Any]:
    """Write `summary/all_results.json` atomically and return what was written."""
    if state is None:
        with StateStore.open(layout.workdir) as opened:
            summary = collect_results(layout, opened)
    else:
        summary = collect_results(layout, state)
    atomic_write_json(layout.summary_json, summary)
    return summary
