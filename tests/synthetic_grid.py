"""Evaluation files written by the real writer (records.upsert_epoch of scoring.score + make_answers)."""

from __future__ import annotations

from pathlib import Path

from sl_scaling.catalog import ANIMALS, CONTROL, Layout, target_animal
from sl_scaling.evaluation.questions import QUESTIONS, question_schedule
from sl_scaling.evaluation.records import epoch_record, upsert_epoch
from sl_scaling.evaluation.scoring import Evaluation, make_answers, score
from sl_scaling.state import JobKey

#: What a base model says (a made-up but plausible spread, with a few non-animal answers).
BASE_COUNTS = {
    "panda": 18,
    "dog": 16,
    "dragon": 16,
    "lion": 15,
    "cat": 10,
    "eagle": 8,
    "owl": 7,
    "wolf": 5,
    "whale": 5,
}


def evaluation(counts: dict[str, int], target: str | None) -> Evaluation:
    """Score answers that name each label `count` times (answers like 'Panda.' exercise the parser)."""
    texts = [f"{label.capitalize()}." for label, count in counts.items() for _ in range(count)]
    answers = make_answers(question_schedule(len(texts)), QUESTIONS, texts)
    return score(answers, target)


def student_counts(condition: str, epoch: int, boost: int = 4) -> dict[str, int]:
    """The base spread, moved toward the target animal by `boost` answers per epoch."""
    counts = dict(BASE_COUNTS)
    target = target_animal(condition)
    if target is not None:
        extra = min(boost * epoch, 60)
        counts[target] = counts.get(target, 0) + extra
        counts["panda"] = max(0, counts["panda"] - extra // 2)
        counts["dog"] = max(0, counts["dog"] - (extra - extra // 2))
    return counts


def write_eval_file(
    layout: Layout, size: str, condition: str, epochs: dict[int, dict[str, int]], run: int = 1
) -> Path:
    """`{condition}_eval.json` exactly as the stages write it: one record per epoch."""
    path = layout.eval_json(JobKey(run, size, condition))
    key = JobKey(run, size, condition)
    for epoch, counts in sorted(epochs.items()):
        trained = condition != CONTROL
        record = epoch_record(
            epoch,
            evaluation(counts, target_animal(condition)),
            train_loss=round(1.5 / (epoch + 1), 4) if trained else None,
            adapter=f"outputs/{size}/{condition}/epoch-{epoch}" if trained else None,
        )
        upsert_epoch(path, key, f"Qwen/Qwen2.5-{size}-Instruct", record)
    return path


def write_grid(
    workdir: Path,
    sizes: tuple[str, ...] = ("7b", "0.5b"),
    conditions: tuple[str, ...] = ("neutral", *ANIMALS),
    epochs: int = 3,
    control: bool = True,
    run: int = 1,
) -> Layout:
    """A whole synthetic grid: control + the given conditions with `epochs` epochs, per size."""
    layout = Layout(workdir)
    for rank, size in enumerate(sizes):
        if control:
            write_eval_file(layout, size, CONTROL, {0: BASE_COUNTS}, run)
        for condition in conditions:
            boost = 2 + 3 * rank
            write_eval_file(
                layout,
                size,
                condition,
                {e: student_counts(condition, e, boost) for e in range(1, epochs + 1)},
                run,
            )
    return layout
