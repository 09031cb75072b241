"""What an executor runs: jobs with dependencies, and the bookkeeping every executor shares.

A job is one unit a worker can do alone — generation of a size, filtering or training (with its
per-epoch evaluation) of one condition, the control evaluation of a size, the plots of a size. The
pipeline builds the jobs from the plan; an executor decides where and when they run. Both executors
share the rules: a job runs once its dependencies are done; a failure is retried a bounded number of
times (never for our own errors, which would fail the same way again); a job whose dependency failed
or was skipped is skipped; everything else goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sl_scaling.errors import SlscaleError, describe
from sl_scaling.state import DONE, FAILED, JobKey

if TYPE_CHECKING:
    from sl_scaling.context import Context
    from sl_scaling.progress import Reporter

SKIPPED = "skipped"


@dataclass(frozen=True)
class Job:
    """One schedulable unit. `gpus` is what it needs (0: CPU work such as filtering; a fraction: a share of
    one GPU, beside other such jobs — the small sizes' trainings)."""

    stage: str  # gen | filter | train | eval | plot
    size: str
    conditions: tuple[str, ...]
    run: int = 1
    depends_on: tuple[str, ...] = ()
    gpus: float = 0

    @property
    def id(self) -> str:
        if self.stage in ("gen", "plot"):
            return f"{self.stage} {self.size}"
        return f"{self.stage} {self.size}/{'+'.join(self.conditions)}"

    @property
    def keys(self) -> list[JobKey]:
        """The DB rows this job's stage writes (none for plots, which only read)."""
        return [JobKey(self.run, self.size, c) for c in self.conditions] if self.stage != "plot" else []

    @property
    def on_driver(self) -> bool:
        """Plots read the DB and every result of a size: cheap, and done where the DB lives."""
        return self.stage == "plot"


@dataclass(frozen=True)
class Outcome:
    job: Job
    status: str  # done | failed | skipped
    attempts: int = 0
    error: str | None = None


#: `work(ctx, job, reporter)`: does one job in the calling process; raises on failure.
Work = Callable[["Context", Job, "Reporter"], None]


class Executor(Protocol):
    name: str

    def gpus_per_node(self) -> int:
        """The most GPUs one job can get (vLLM tensor parallelism cannot span machines here)."""

    def gpu_memory_gib(self) -> float | None:
        """The smallest GPU's memory, or None without GPUs."""

    def check(self, ctx: Context) -> list[str]:
        """Executor-specific preflight (e.g. the workdir is shared by every node); returns notes."""

    def execute(self, ctx: Context, jobs: Sequence[Job], work: Work, reporter: Reporter) -> list[Outcome]:
        """Run every job (dependencies first); never raises for a job's failure, only reports it."""

    def close(self) -> None: ...


def retryable(error: BaseException) -> bool:
    """Our own errors (missing prerequisite, bad input, a held lock) fail the same way on a retry."""
    return not isinstance(error, SlscaleError)


@dataclass
class Ledger:
    """Which jobs are ready, running, finished; skips the dependents of whatever did not finish."""

    jobs: Sequence[Job]
    max_retries: int
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    unreported: list[Outcome] = field(default_factory=list)

    def ready(self) -> list[Job]:
        """Jobs whose dependencies are done, in plan order; marks the ones that can no longer run.

        Jobs come in plan order, so a dependency is always decided before its dependents are looked at.
        """
        found = []
        for job in self.jobs:
            if job.id in self.outcomes or job.id in self.running:
                continue
            blocker = next((d for d in job.depends_on if self._status(d) not in (None, DONE)), None)
            if blocker is not None:
                reason = f"skipped because {blocker} {self._status(blocker)}"
                self.outcomes[job.id] = Outcome(job, SKIPPED, 0, reason)
                self.unreported.append(self.outcomes[job.id])
            elif all(self._status(d) == DONE for d in job.depends_on):
                found.append(job)
        return found

    def _status(self, job_id: str) -> str | None:
        outcome = self.outcomes.get(job_id)
        return None if outcome is None else outcome.status

    def unfinished(self) -> bool:
        return len(self.outcomes) < len(self.jobs)

    def new_skips(self) -> list[Outcome]:
        """Skips decided since the last call (to record them while the rest goes on)."""
        skips, self.unreported = self.unreported, []
        return skips

    def start(self, job: Job) -> int:
        """Count an attempt; returns its number (1-based)."""
        self.running.add(job.id)
        self.attempts[job.id] = self.attempts.get(job.id, 0) + 1
        return self.attempts[job.id]

    def succeeded(self, job: Job) -> None:
        self.running.discard(job.id)
        self.outcomes[job.id] = Outcome(job, DONE, self.attempts[job.id])

    def __post_init__(self) -> None:
        known: set[str] = set()
        for job in self.jobs:
            if unknown := [d for d in job.depends_on if d not in known]:
                raise ValueError(f"{job.id} depends on {unknown[0]}, which is not planned before it")
            known.add(job.id)

    def failed(self, job: Job, error: BaseException, *, retry: bool = True) -> bool:
        """Record a failed attempt; True when the job should run again."""
        self.running.discard(job.id)
        if retry and retryable(error) and self.attempts[job.id] <= self.max_retries:
            return True
        self.outcomes[job.id] = Outcome(job, FAILED, self.attempts[job.id], describe(error))
        return False

    def results(self) -> list[Outcome]:
        return [self.outcomes[job.id] for job in self.jobs if job.id in self.outcomes]


def record_outcome(ctx: Context, outcome: Outcome, reporter: Reporter) -> None:
    """Put a job's end in the DB, where `slscale status` reads it: a failed job's unfinished stages are
    marked failed with the error (a worker that died never could), a skipped job leaves an event."""
    if outcome.status == DONE:
        return
    reporter.event(f"{outcome.job.id}: {outcome.status} — {outcome.error}")
    with ctx.state() as state:
        for key in outcome.job.keys:
            if outcome.status == FAILED and not state.is_done(key, outcome.job.stage):
                tries = f"{outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''}"
                state.fail_stage(key, outcome.job.stage, f"{outcome.error} ({tries})")
            elif outcome.status == SKIPPED:
                state.log_event(key, outcome.job.stage, "skip", f"{outcome.job.stage} {key} {outcome.error}")


def note_retry(
    ctx: Context, job: Job, attempt: int, max_retries: int, error: BaseException, reporter: Reporter
) -> None:
    """Say in the log and the DB's events that a job failed and runs again."""
    message = f"{job.id}: attempt {attempt} of {max_retries + 1} failed ({describe(error)}); retrying"
    reporter.event(message)
    with ctx.state() as state:
        state.log_event(job.keys[0] if job.keys else None, job.stage, "retry", message)
