"""The in-process executor: jobs in plan order on this machine; jobs that take a share of a GPU run
side by side, each in its own process.

A job whose `gpus` is a fraction (a small size's training: `training.speed.trainings_per_gpu`) shares a
device with others up to one whole device: the GPU sits mostly idle under one such job, so several
conditions train at once. Each runs `work` unchanged in a fresh process (without a GPU, a fork of a server
that has imported the training stack: `processes.cpu_workers`), so its rows, loss and seeds are exactly
those it would have alone; only the time differs (on a GPU they run under CUDA MPS, `executors/mps.py`, so
that their kernels overlap). Everything else runs here, one at a time, and a job that
needs a whole GPU waits until no shared job is running.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sl_scaling.catalog import Layout
from sl_scaling.context import Context
from sl_scaling.errors import SlscaleError, Terminated, interrupt_on_sigterm
from sl_scaling.executors.base import Job, Ledger, Outcome, Work, describe, note_retry, record_outcome
from sl_scaling.executors.mps import CUDA_PROBE, PrivateMps, mps_running
from sl_scaling.processes import cpu_workers, start_cpu_workers_now, start_worker
from sl_scaling.progress import ForwardingReporter, Reporter, replay
from sl_scaling.settings import Settings

#: How often the parent collects progress and finished workers while shared jobs run.
POLL_S = 0.5
_EPSILON = 1e-9


def shares_a_device(job: Job) -> bool:
    return 0 < job.gpus < 1


class SharedGpu:
    """CUDA MPS for the trainings that share a GPU (`executors/mps.py`): a private daemon, started as the first
    of them starts, where the user runs none and SLSCALE_MPS allows it; says once what came of it."""

    def __init__(
        self,
        ctx: Context,
        jobs: Sequence[Job],
        gpus: int,
        reporter: Reporter,
        probe: Sequence[str] = CUDA_PROBE,
    ) -> None:
        sharing = bool(gpus) and any(shares_a_device(job) for job in jobs) and not mps_running()
        self.mps = PrivateMps(ctx.layout.logs_dir / "mps", probe) if sharing and ctx.settings.mps else None
        self.reporter = reporter
        if sharing and self.mps is None:
            reporter.event("trainings sharing a GPU take turns on it: CUDA MPS is off (SLSCALE_MPS=false)")

    def environment(self) -> dict[str, str] | None:
        """What a training's process needs to connect to the daemon (None: it runs without MPS)."""
        if self.mps is None:
            return None
        if self.mps.environment is None and self.mps.problem is None:  # the first shared training: start it
            if self.mps.start():
                self.reporter.event(
                    "CUDA MPS started for the trainings sharing a GPU, so that their kernels overlap (slscale's own "
                    f"daemon, log in {self.mps.log_dir}; SLSCALE_MPS=false turns it off)"
                )
            else:
                self.reporter.event(
                    f"trainings sharing a GPU take turns on it: CUDA MPS did not start ({self.mps.problem})"
                )
        return self.mps.environment

    def stop(self) -> None:
        if self.mps is not None:
            self.mps.stop()


def _worker(
    settings: Settings, job: Job, work: Work, messages: Any, device: int | None
) -> None:  # pragma: no cover - runs in the spawned process (its effects are tested)
    """A shared job's process: pinned to its GPU, reporting and ending through `messages`."""
    interrupt_on_sigterm()  # the driver passes a SIGTERM on: the job then records its interruption
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(device)
    ctx = Context(settings=settings, layout=Layout(settings.workdir))
    reporter = ForwardingReporter(lambda method, args, kwargs: messages.put((job.id, method, args, kwargs)))
    try:
        work(ctx, job, reporter)
    except BaseException as exc:
        messages.put((job.id, "__end__", _portable(exc), {}))
        raise SystemExit(1) from None
    messages.put((job.id, "__end__", None, {}))


def _portable(error: BaseException) -> BaseException:
    """The error as the parent can unpickle it: ours keep their family (not retried), others their type
    where they pickle, else their description."""
    if isinstance(error, SlscaleError):
        return SlscaleError(str(error))  # subclasses' extra constructor arguments do not survive pickling
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(describe(error))
    return error


@dataclass
class _Running:
    job: Job
    process: Any
    device: int
    reported_end: bool = False
    error: BaseException | None = None  # from the worker's end message


class LocalExecutor:
    name = "local"

    def __init__(self, max_retries: int = 0) -> None:
        self.max_retries = max_retries

    def gpus_per_node(self) -> int:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def gpu_memory_gib(self) -> float | None:
        import torch

        if not torch.cuda.is_available():
            return None
        return min(
            torch.cuda.get_device_properties(i).total_memory / 2**30 for i in range(torch.cuda.device_count())
        )

    def check(self, ctx: Context) -> list[str]:
        return []

    def execute(self, ctx: Context, jobs: Sequence[Job], work: Work, reporter: Reporter) -> list[Outcome]:
        ledger = Ledger(jobs, self.max_retries)
        gpus = self.gpus_per_node()
        devices = max(gpus, 1)  # without a GPU, shared jobs share the CPU the same way
        shared_gpu = SharedGpu(ctx, jobs, gpus, reporter)
        # Without a GPU the shared jobs are CPU lanes: forks of a server that has imported their stack.
        workers = multiprocessing.get_context("spawn") if gpus else cpu_workers()
        if not gpus and any(shares_a_device(job) for job in jobs):
            start_cpu_workers_now()  # its imports overlap the jobs that come first (generation)
        messages = workers.Queue()
        running: dict[str, _Running] = {}
        try:
            while ledger.unfinished():
                for outcome in ledger.new_skips():
                    record_outcome(ctx, outcome, reporter)
                progressed = False
                for job in ledger.ready():
                    if shares_a_device(job):
                        device = _free_device(job, running.values(), devices)
                        if device is not None:
                            ledger.start(job)
                            process = start_worker(
                                workers, _worker, ctx.settings, job, work, messages, device if gpus else None,
                                name=f"slscale {job.id}", environment=shared_gpu.environment(),
                            )  # fmt: skip
                            running[job.id] = _Running(job, process, device)
                            progressed = True
                    elif job.gpus == 0 or not running:
                        self._run_here(ctx, ledger, job, work, reporter)
                        progressed = True
                        break  # what is ready has changed
                if running:
                    self._collect(ctx, ledger, running, messages, reporter)
                elif not progressed:
                    break
        except KeyboardInterrupt as exc:
            if isinstance(exc, Terminated):  # a Ctrl-C reaches the workers itself, a SIGTERM does not
                for entry in running.values():
                    entry.process.terminate()  # SIGTERM: the worker records its interruption
            for entry in running.values():
                entry.process.join(timeout=30)  # let the worker record its interruption
                if entry.process.is_alive():
                    entry.process.terminate()
            raise
        finally:
            shared_gpu.stop()  # its trainings have ended or been joined: the daemon quits, its pipes go
        for outcome in ledger.new_skips():
            record_outcome(ctx, outcome, reporter)
        return ledger.results()

    def _run_here(self, ctx: Context, ledger: Ledger, job: Job, work: Work, reporter: Reporter) -> None:
        while True:
            attempt = ledger.start(job)
            try:
                work(ctx, job, reporter)
            except Exception as exc:
                if ledger.failed(job, exc, retry=not job.on_driver):
                    note_retry(ctx, job, attempt, self.max_retries, exc, reporter)
                    continue
                record_outcome(ctx, ledger.outcomes[job.id], reporter)
            else:
                ledger.succeeded(job)
            return

    def _collect(
        self, ctx: Context, ledger: Ledger, running: dict[str, _Running], messages: Any, reporter: Reporter
    ) -> None:
        """Replay the workers' reports; settle the ones that ended (a retry goes back to the ready list)."""
        try:
            while True:
                job_id, method, args, kwargs = messages.get(timeout=POLL_S)
                if method == "__end__":
                    running[job_id].reported_end, running[job_id].error = True, args
                else:
                    replay(reporter, method, args, kwargs)
        except queue.Empty:
            pass
        for job_id, entry in list(running.items()):
            if entry.process.is_alive() or (not entry.reported_end and entry.process.exitcode == 0):
                continue  # still running, or its end message is still on its way
            entry.process.join()
            del running[job_id]
            job, attempt = entry.job, ledger.attempts[entry.job.id]
            if entry.reported_end and entry.error is None and entry.process.exitcode == 0:
                ledger.succeeded(job)
                continue
            error = _worker_error(entry)
            if ledger.failed(job, error):
                note_retry(ctx, job, attempt, self.max_retries, error, reporter)
            else:
                record_outcome(ctx, ledger.outcomes[job.id], reporter)

    def close(self) -> None:
        pass


def _free_device(job: Job, running: Any, devices: int) -> int | None:
    """The device with the most room left for `job`'s share, or None while every one is full."""
    used = [0.0] * devices
    for entry in running:
        used[entry.device] += entry.job.gpus
    device = min(range(devices), key=lambda d: used[d])
    return device if used[device] + job.gpus <= 1 + _EPSILON else None


def _worker_error(entry: _Running) -> BaseException:
    """The worker's own error, or why it ended without one (killed, out of memory)."""
    if entry.error is not None:
        return entry.error
    return RuntimeError(f"the worker for {entry.job.id} exited with code {entry.process.exitcode}")


def make(settings: Settings, *, max_retries: int, address: str | None = None) -> LocalExecutor:
    """The registry's factory (`address` is a cluster's; this executor has none)."""
    return LocalExecutor(max_retries=max_retries)
