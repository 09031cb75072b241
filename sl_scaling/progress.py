"""How stages report progress without knowing who listens: a live dashboard, log lines, or nobody.

Stages call a `Reporter`; the CLI picks the implementation (Rich `Live` on a terminal, one line
per event otherwise). Keep the protocol small so every stage can afford to call it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TextIO


class Reporter(Protocol):
    def job_started(
        self, job: str, description: str, total: float | None = None, unit: str = "rows"
    ) -> None: ...

    def job_advanced(self, job: str, completed: float, **metrics: Any) -> None:
        """`completed` is absolute (not an increment); metrics e.g. epoch=, loss=, tokens_per_s=."""

    def job_finished(self, job: str, message: str = "") -> None: ...

    def event(self, message: str) -> None: ...


class ManagedReporter(Reporter, Protocol):
    """A reporter the CLI starts and stops around a command (the live one owns the terminal meanwhile)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class _NothingToStart:
    """Start/stop for reporters that own no terminal: nothing to do."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class NullReporter(_NothingToStart):
    def job_started(self, job: str, description: str, total: float | None = None, unit: str = "rows") -> None:
        pass

    def job_advanced(self, job: str, completed: float, **metrics: Any) -> None:
        pass

    def job_finished(self, job: str, message: str = "") -> None:
        pass

    def event(self, message: str) -> None:
        pass


def _format_metrics(metrics: dict[str, Any]) -> str:
    parts = []
    for name, value in metrics.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{name}={value}")
    return " ".join(parts)


@dataclass
class PlainReporter(_NothingToStart):
    """One line per event, and a progress line at most every `interval` seconds per job (logs, CI)."""

    stream: TextIO
    interval: float = 10.0
    _jobs: dict[str, tuple[str, float | None, str, float]] = field(default_factory=dict)

    def _line(self, text: str) -> None:
        self.stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        self.stream.flush()

    def job_started(self, job: str, description: str, total: float | None = None, unit: str = "rows") -> None:
        self._jobs[job] = (description, total, unit, 0.0)
        self._line(f"{description}: started" + (f" ({total:g} {unit})" if total else ""))

    def job_advanced(self, job: str, completed: float, **metrics: Any) -> None:
        description, total, unit, last = self._jobs.get(job, (job, None, "rows", 0.0))
        if time.monotonic() - last < self.interval:
            return
        self._jobs[job] = (description, total, unit, time.monotonic())
        of = f"/{total:g}" if total else ""
        self._line(f"{description}: {completed:g}{of} {unit} {_format_metrics(metrics)}".rstrip())

    def job_finished(self, job: str, message: str = "") -> None:
        description = self._jobs.pop(job, (job,))[0]
        self._line(f"{description}: done" + (f" — {message}" if message else ""))

    def event(self, message: str) -> None:
        self._line(message)


@dataclass
class MultiReporter:
    """Fan one stage's progress out to several reporters (the dashboard and the stage's log file)."""

    reporters: list[Reporter]

    def job_started(self, job: str, description: str, total: float | None = None, unit: str = "rows") -> None:
        for reporter in self.reporters:
            reporter.job_started(job, description, total, unit)

    def job_advanced(self, job: str, completed: float, **metrics: Any) -> None:
        for reporter in self.reporters:
            reporter.job_advanced(job, completed, **metrics)

    def job_finished(self, job: str, message: str = "") -> None:
        for reporter in self.reporters:
            reporter.job_finished(job, message)

    def event(self, message: str) -> None:
        for reporter in self.reporters:
            reporter.event(message)


class EventsOnce(MultiReporter):
    """A run's own reporter: an event line already shown is not shown again. Every process of a run
    says the same notices (Unsloth or vLLM not installed, W&B offline: once per training lane, in the
    generation and in the control evaluation); the terminal gets each once, and every stage log, written
    beside this reporter, keeps its own copy. Lines about a job name the job, so none of them repeat."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__([reporter])
        self._shown: set[str] = set()

    def event(self, message: str) -> None:
        if message not in self._shown:
            self._shown.add(message)
            super().event(message)


#: `send(method, args, kwargs)`: carries one Reporter call to another process, which replays it.
Send = Callable[[str, tuple[Any, ...], dict[str, Any]], None]


class ForwardingReporter:
    """A Reporter in a worker process whose calls the parent's reporter replays, in order (a Ray task's
    through the coordinator, a local training's through a queue)."""

    def __init__(self, send: Send) -> None:
        self._send = send

    def job_started(self, job: str, description: str, total: float | None = None, unit: str = "rows") -> None:
        self._send("job_started", (job, description), {"total": total, "unit": unit})

    def job_advanced(self, job: str, completed: float, **metrics: Any) -> None:
        self._send("job_advanced", (job, completed), metrics)

    def job_finished(self, job: str, message: str = "") -> None:
        self._send("job_finished", (job, message), {})

    def event(self, message: str) -> None:
        self._send("event", (message,), {})


def replay(reporter: Reporter, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Do a forwarded call on this process's reporter."""
    getattr(reporter, method)(*args, **kwargs)


def make_reporter(stream: TextIO | None = None) -> ManagedReporter:
    """The reporter for a command's output: a live dashboard on a terminal, log lines otherwise.

    Prefer `with make_reporter() as reporter:`, so the live view gives the terminal back when the
    command ends; without it, the live view starts on the first report and stops at exit.
    """
    import sys

    stream = stream or sys.stderr
    if stream.isatty():
        from rich.console import Console

        from sl_scaling.dashboard import LiveReporter

        return LiveReporter(Console(file=stream), auto_start=True)
    return PlainReporter(stream)
