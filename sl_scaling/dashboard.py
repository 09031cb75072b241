"""Rich views: the live dashboard stages report to, and the status table that `slscale status` shows.

One `Live` renders one `Group` (overall bar, a bar per active job, the latest events), so nothing
else fights for the terminal; stdout/stderr writes from libraries are shown above it by Rich.
"""

from __future__ import annotations

import atexit
import time
from collections import deque
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from sl_scaling.state import DONE, FAILED, INTERRUPTED, PENDING, RUNNING
from sl_scaling.status import STALE, GridStatus, StatusRow

#: Metrics a stage may pass to `job_advanced` that are rates, shown in the rate column.
RATE_METRICS = {"rows_per_s": "rows/s", "tokens_per_s": "tok/s", "samples_per_s": "samples/s"}
STATE_STYLES = {
    RUNNING: "bold cyan",
    STALE: "bold magenta",
    FAILED: "bold red",
    INTERRUPTED: "magenta",
    DONE: "green",
    PENDING: "dim",
}


def _number(value: float) -> str:
    """Compact and stable-width: 12.3k, 845, 9.94, 0.0123."""
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


class _RateColumn(ProgressColumn):
    """The stage's own rates (rows/s, tokens/s) when it reports them, else Rich's measured speed."""

    def render(self, task: Task) -> Text:
        metrics: dict[str, Any] = task.fields.get("metrics", {})
        rates = [
            f"{_number(float(metrics[name]))} {unit}"
            for name, unit in RATE_METRICS.items()
            if metrics.get(name) is not None
        ]
        if not rates and task.speed is not None:
            rates = [f"{_number(task.speed)} {task.fields.get('unit', '')}/s"]
        return Text(" · ".join(rates), style="progress.data.speed")


class _MetricsColumn(ProgressColumn):
    """Epoch, loss and any other metric the stage reported last, e.g. `epoch 3 · loss 0.81`."""

    def render(self, task: Task) -> Text:
        metrics: dict[str, Any] = task.fields.get("metrics", {})
        parts = [
            f"{name} {_number(value) if isinstance(value, float | int) else value}"
            for name, value in metrics.items()
            if name not in RATE_METRICS and value is not None
        ]
        return Text(" · ".join(parts), style="yellow")


class LiveReporter:
    """A `Reporter` drawing one Rich `Live`: overall progress, a bar per active job, the latest events.

    Use as a context manager (or `start()`/`stop()`). With `auto_start` the first report starts
    the view and interpreter exit stops it, for callers that never call `start()`. Updates made
    while stopped still render on the next `console.print(reporter)` (how the tests look at it).
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        max_events: int = 8,
        refresh_per_second: float = 4,
        auto_start: bool = False,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.overall = Progress(
            TextColumn("[bold]overall"),
            BarColumn(bar_width=40),
            MofNCompleteColumn(),
            TextColumn("jobs · {task.description}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.jobs = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(bar_width=30),
            TextColumn("{task.completed:g}/{task.fields[total_text]} {task.fields[unit]}"),
            _RateColumn(),
            _MetricsColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._overall_task = self.overall.add_task("0 active · elapsed", total=0)
        self._planned: int | None = None
        self._finished = 0
        self._tasks: dict[str, TaskID] = {}
        self._descriptions: dict[str, str] = {}
        self._metrics: dict[str, dict[str, Any]] = {}
        self._events: deque[tuple[str, str]] = deque(maxlen=max_events)
        self._live = Live(self, console=self.console, refresh_per_second=refresh_per_second)
        self._auto_start = auto_start

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if not self._live.is_started:
            self._live.start()
            atexit.register(self.stop)  # give the terminal (cursor) back even on an early exit

    def stop(self) -> None:
        if self._live.is_started:
            self._live.stop()
            atexit.unregister(self.stop)

    def _touch(self) -> None:
        if self._auto_start:
            self.start()

    def __enter__(self) -> LiveReporter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- Reporter ----------------------------------------------------------------------------

    def plan(self, jobs: int) -> None:
        """How many jobs the whole command will run, when the caller knows (for the overall bar)."""
        self._touch()
        self._planned = jobs
        self._update_overall()

    def job_started(self, job: str, description: str, total: float | None = None, unit: str = "rows") -> None:
        self._touch()
        if job in self._tasks:
            self.jobs.remove_task(self._tasks.pop(job))
        total_text = f"{total:g}" if total else "?"
        self._descriptions[job] = description
        self._metrics[job] = {}
        self._tasks[job] = self.jobs.add_task(
            description, total=total, unit=unit, total_text=total_text, metrics={}
        )
        self._update_overall()

    def job_advanced(self, job: str, completed: float, **metrics: Any) -> None:
        self._touch()
        task_id = self._tasks.get(job)
        if task_id is None:
            self.job_started(job, job)
            task_id = self._tasks[job]
        self._metrics[job].update(metrics)
        self.jobs.update(task_id, completed=completed, metrics=dict(self._metrics[job]))

    def job_finished(self, job: str, message: str = "") -> None:
        task_id = self._tasks.pop(job, None)
        if task_id is not None:
            self.jobs.remove_task(task_id)
        description = self._descriptions.pop(job, job)
        self._metrics.pop(job, None)
        self._finished += 1
        self._update_overall()
        self.event(f"✓ {description}" + (f" — {message}" if message else ""))

    def event(self, message: str) -> None:
        self._touch()
        self._events.append((time.strftime("%H:%M:%S"), message))

    # --- rendering ---------------------------------------------------------------------------

    def _update_overall(self) -> None:
        total = max(self._planned or 0, self._finished + len(self._tasks))
        self.overall.update(
            self._overall_task,
            completed=self._finished,
            total=total,
            description=f"{len(self._tasks)} active · elapsed",
        )

    def _events_table(self) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_column(style="dim", no_wrap=True)
        table.add_column(overflow="fold")
        for stamp, message in list(self._events):
            style = "red" if "fail" in message.lower() else ""
            table.add_row(stamp, Text(message, style=style))
        return table

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = [self.overall]
        if self._tasks:
            parts.append(self.jobs)
        if self._events:
            parts += [Text("latest events", style="bold dim"), self._events_table()]
        return Group(*parts)


# --- the status table ----------------------------------------------------------------------------


def _rate(row: StatusRow) -> str:
    if row.target_rate is None:
        return "—"
    text = f"{row.target_rate:.1%}"
    if row.ci_low is not None and row.ci_high is not None:
        text += f" [{row.ci_low:.1%}–{row.ci_high:.1%}]"
    return text


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def status_table(grid: GridStatus) -> Table:
    """The grid as a Rich table; a state is coloured and names its stage (`running train`)."""
    show_run = any(row.run != 1 for row in grid.rows)
    table = Table(title="slscale status", title_justify="left", caption_justify="left", header_style="bold")
    if show_run:
        table.add_column("run", justify="right")
    table.add_column("size")
    table.add_column("condition")
    table.add_column("state")
    table.add_column("generated", justify="right")
    table.add_column("kept", justify="right")
    table.add_column("epochs", justify="right")
    table.add_column("target rate [95% CI]", justify="right")
    table.add_column("top answer")
    table.add_column("uploads pending", justify="right")
    for row in grid.rows:
        state = Text(row.state, style=STATE_STYLES.get(row.state, ""))
        if row.stage and row.state != DONE:
            state.append(f" {row.stage}")
        if row.error and row.error != "interrupted":
            state.append(f": {row.error[:60]}", style="red")
        epochs = f"{row.epochs_done}/{row.epochs_planned or '?'}"
        if row.condition == "control" or (row.epochs_planned is None and not row.epochs_done):
            epochs = "—"
        top = f"{row.top_label} {row.top_share:.0%}" if row.top_label and row.top_share is not None else "—"
        cells = [
            row.size,
            row.condition,
            state,
            _count(row.generated),
            _count(row.kept),
            epochs,
            _rate(row),
            top,
            str(row.uploads_pending) if row.uploads_pending else "—",
        ]
        table.add_row(*([str(row.run)] if show_run else []), *cells)
    counts = grid.counts()
    table.caption = " · ".join(f"{count} {state}" for state, count in counts.items())
    return table


def status_view(grid: GridStatus, *, events: bool = False) -> RenderableType:
    """The status table, and with `events` the latest events under it (the `--watch` view)."""
    if not events or not grid.events:
        return status_table(grid)
    log = Table.grid(padding=(0, 1))
    log.add_column(style="dim", no_wrap=True)
    log.add_column()
    for event in grid.events:
        log.add_row(event["ts"].replace("T", " ")[:19], event["message"])
    return Group(status_table(grid), Text("latest events", style="bold dim"), log)
