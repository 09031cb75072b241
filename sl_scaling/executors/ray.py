"""The Ray executor: every job a Ray task with the GPUs it needs, on one host or a whole cluster.

State: only the driver's host touches the SQLite DB. Workers reach it through one actor pinned to
the driver's node (the coordinator), so the WAL journal — which needs shared memory and is safe only
between processes of one host — stays correct however many machines run jobs, and `slscale status`
on the driver's host sees every update live. The coordinator also forwards the workers' progress to
the driver's reporter. Data files (raw/filtered JSONL, adapters, evaluations) are written by the
workers directly, so with several machines the workdir must be one shared filesystem, mounted at
the same path everywhere: `check` proves it before anything runs.

Imported only for `--executor ray` (it needs the `cluster` extra).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sl_scaling.catalog import Layout
from sl_scaling.context import Context
from sl_scaling.errors import MissingPrerequisiteError, SlscaleError, UsageError
from sl_scaling.executors.base import Job, Ledger, Outcome, Work, note_retry, record_outcome
from sl_scaling.progress import ForwardingReporter, Reporter, replay
from sl_scaling.settings import Settings
from sl_scaling.state import DONE, StageLifecycle, StateStore

#: Environment a worker needs to behave like the driver (offline mode, caches, W&B, our settings).
FORWARDED_PREFIXES = ("SLSCALE_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "WANDB_", "VLLM_", "TOKENIZERS_")
#: Names that hold credentials: passed to each task as an argument, never in the job's runtime_env
#: (which Ray shows in its dashboard and logs).
SECRET_MARKERS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
#: How long to wait for a node to answer the workdir check before calling it unreachable.
PROBE_TIMEOUT_S = 300.0
#: How often the driver collects progress while jobs run.
POLL_S = 0.5


def worker_environment(environ: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secret) variables to give every worker: the plain ones by runtime_env, secrets per task."""
    forwarded = {k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES)}
    secret = {k: v for k, v in forwarded.items() if any(m in k.upper() for m in SECRET_MARKERS)}
    plain = {k: v for k, v in forwarded.items() if k not in secret}
    return plain, secret


# --- the coordinator: the DB and the progress stream, on the driver's node ----------------------


class Coordinator:
    """Runs on the driver's node; one call at a time, so DB writes are serialised and short."""

    def __init__(self, workdir: str) -> None:
        self.state = StateStore.open(Path(workdir))
        self.reports: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def state_call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name.startswith("_") or name in (
            "transaction",
            "snapshot",
            "locked",
            "recorded",
            "running",
            "close",
        ):
            raise UsageError(f"StateStore.{name} cannot be called through the coordinator")
        return getattr(self.state, name)(*args, **kwargs)

    def report(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.reports.append((method, args, kwargs))

    def drain(self) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        reports, self.reports = self.reports, []
        return reports


def _unwrap(ref: ray.ObjectRef) -> Any:
    """`ray.get`, raising the remote error itself (a LockedError stays a LockedError)."""
    try:
        return ray.get(ref)
    except RayTaskError as exc:
        raise (exc.cause if isinstance(exc.cause, Exception) else exc) from None


class StateProxy(StageLifecycle):
    """`StateStore`'s interface inside a worker: each call runs in the coordinator.

    Locks are taken by the coordinator's process; the driver never runs a job twice at once, and a
    retry after a worker died takes its own process's lock over.
    """

    def __init__(self, coordinator: ray.actor.ActorHandle) -> None:
        self._coordinator = coordinator

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return _unwrap(self._coordinator.state_call.remote(name, args, kwargs))

        return call

    def close(self) -> None:
        pass

    def __enter__(self) -> StateProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@dataclass
class WorkerContext(Context):
    """The worker's Context: the driver's settings, state through the coordinator."""

    coordinator: ray.actor.ActorHandle | None = None

    def state(self) -> StateStore:
        return StateProxy(self.coordinator)  # type: ignore[return-value]  # same interface


def run_task(
    settings: Settings, job: Job, work: Work, coordinator: ray.actor.ActorHandle, secret_env: dict[str, str]
) -> None:
    """The body of every job's Ray task."""
    os.environ.update(secret_env)
    ctx = WorkerContext(settings=settings, layout=Layout(settings.workdir), coordinator=coordinator)
    try:
        work(ctx, job, ForwardingReporter(coordinator.report.remote))
    except SlscaleError as exc:
        # Our subclasses carry extra constructor arguments that do not survive pickling; the message
        # and the class family (not retried) are what the driver needs.
        raise SlscaleError(str(exc)) from None


def probe_node(workdir: str, token: str) -> dict[str, Any]:
    """On one node: can it read the driver's marker and write its own? Which GPUs does it have?"""
    check_dir = Path(workdir) / ".slscale-cluster-check"
    marker = check_dir / f"{token}.driver"
    seen = marker.is_file() and marker.read_text() == token
    if seen:
        (check_dir / f"{token}.{ray.get_runtime_context().get_node_id()}").write_text(socket.gethostname())
    memory = None
    try:
        import torch

        if torch.cuda.is_available():
            memory = min(
                torch.cuda.get_device_properties(i).total_memory / 2**30
                for i in range(torch.cuda.device_count())
            )
    except ImportError:
        pass
    return {"host": socket.gethostname(), "seen": seen, "gpu_memory_gib": memory}


# --- the executor -------------------------------------------------------------------------------


class RayExecutor:
    """Connects to `address` (or RAY_ADDRESS), else starts a Ray instance on this machine."""

    name = "ray"

    def __init__(
        self,
        settings: Settings,
        *,
        address: str | None = None,
        max_retries: int = 2,
        num_cpus: int | None = None,
    ) -> None:
        self.settings = settings
        self.max_retries = max_retries
        plain, self._secret_env = worker_environment(dict(os.environ))
        plain["SLSCALE_WORKDIR"] = str(settings.workdir)
        self._runtime_env = {"env_vars": plain}
        self._owns_connection = not ray.is_initialized()  # a notebook or test may have connected already
        if self._owns_connection:
            _connect(address or os.environ.get("RAY_ADDRESS") or None, num_cpus)
        self._node_id = ray.get_runtime_context().get_node_id()
        self._coordinator = (
            ray.remote(Coordinator)
            .options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(self._node_id, soft=False)
            )
            .remote(str(settings.workdir))
        )
        self._task = ray.remote(run_task)
        self._gpu_memory: float | None = None

    @staticmethod
    def _nodes() -> list[dict[str, Any]]:
        return [node for node in ray.nodes() if node.get("Alive")]

    def gpus_per_node(self) -> int:
        return max((int(node["Resources"].get("GPU", 0)) for node in self._nodes()), default=0)

    def gpu_memory_gib(self) -> float | None:
        return self._gpu_memory

    def check(self, ctx: Context) -> list[str]:
        """Every node must see the workdir (a shared filesystem at the same path); learn GPU memory."""
        workdir = ctx.layout.workdir
        check_dir = workdir / ".slscale-cluster-check"
        check_dir.mkdir(exist_ok=True)
        token = secrets.token_hex(8)
        (check_dir / f"{token}.driver").write_text(token)
        nodes = self._nodes()
        probe = ray.remote(probe_node)
        refs = {
            probe.options(
                num_cpus=0,
                num_gpus=1 if node["Resources"].get("GPU", 0) else 0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(str(workdir), token): node
            for node in nodes
        }
        try:
            answers = {ref: ray.get(ref, timeout=PROBE_TIMEOUT_S) for ref in refs}
            seen_by_driver = {p.suffix[1:] for p in check_dir.glob(f"{token}.*")}
        except GetTimeoutError:
            raise MissingPrerequisiteError(
                f"a Ray node did not answer the workdir check within {PROBE_TIMEOUT_S:.0f} s; "
                "check the cluster with `ray status`"
            ) from None
        finally:
            for path in check_dir.glob(f"{token}.*"):
                path.unlink()
            with contextlib.suppress(OSError):  # another run may be checking at the same time
                check_dir.rmdir()
        for ref, answer in answers.items():
            node = refs[ref]
            if not answer["seen"] or node["NodeID"] not in seen_by_driver:
                raise MissingPrerequisiteError(
                    f"the workdir {workdir} is not shared with Ray node {answer['host']} "
                    f"({node['NodeManagerAddress']}): put it on a filesystem every node mounts at "
                    "the same path (see docs/cluster.md)"
                )
        memories = [a["gpu_memory_gib"] for a in answers.values() if a["gpu_memory_gib"] is not None]
        self._gpu_memory = min(memories) if memories else None
        gpus = sum(int(node["Resources"].get("GPU", 0)) for node in nodes)
        return [f"ray: {len(nodes)} node(s), {gpus} GPU(s); the workdir is shared by every node"]

    def _submit(self, job: Job, work: Work, gpus_available: bool) -> ray.ObjectRef:
        return self._task.options(
            name=job.id,
            num_cpus=1,
            num_gpus=job.gpus if gpus_available else 0,
            max_retries=0,  # retried by the driver, which records every attempt (see Ledger)
            runtime_env=self._runtime_env,
        ).remote(self.settings, job, work, self._coordinator, self._secret_env)

    def _pump(self, reporter: Reporter) -> None:
        for method, args, kwargs in ray.get(self._coordinator.drain.remote()):
            replay(reporter, method, args, kwargs)

    def execute(self, ctx: Context, jobs: Sequence[Job], work: Work, reporter: Reporter) -> list[Outcome]:
        ledger = Ledger(jobs, self.max_retries)
        gpus_available = self.gpus_per_node() > 0
        running: dict[ray.ObjectRef, Job] = {}
        try:
            while ledger.unfinished():
                for job in ledger.ready():
                    ledger.start(job)
                    if job.on_driver:
                        self._pump(reporter)
                        self._run_on_driver(ctx, ledger, job, work, reporter)
                    else:
                        running[self._submit(job, work, gpus_available)] = job
                for outcome in ledger.new_skips():
                    record_outcome(ctx, outcome, reporter)
                if not running:
                    continue
                finished, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                self._pump(reporter)
                for ref in finished:
                    job = running.pop(ref)
                    attempt = ledger.attempts[job.id]
                    try:
                        ray.get(ref)
                    except RayError as exc:
                        error = exc.cause if isinstance(exc, RayTaskError) and exc.cause else exc
                        if ledger.failed(job, error):
                            note_retry(ctx, job, attempt, self.max_retries, error, reporter)
                        else:
                            record_outcome(ctx, ledger.outcomes[job.id], reporter)
                    else:
                        ledger.succeeded(job)
        except KeyboardInterrupt:
            self._interrupt(ctx, running)
            raise
        self._pump(reporter)
        return ledger.results()

    def _run_on_driver(self, ctx: Context, ledger: Ledger, job: Job, work: Work, reporter: Reporter) -> None:
        try:
            work(ctx, job, reporter)
        except Exception as exc:
            ledger.failed(job, exc, retry=False)
            record_outcome(ctx, ledger.outcomes[job.id], reporter)
        else:
            ledger.succeeded(job)

    def _interrupt(self, ctx: Context, running: dict[ray.ObjectRef, Job]) -> None:
        """Ctrl-C: stop the tasks and say so in the DB (their stages resume on the next run)."""
        for ref in running:
            ray.cancel(ref, force=True)
        with ctx.state() as state:
            for job in running.values():
                for key in job.keys:
                    record = state.stage(key, job.stage)
                    if record is None or record.status != DONE:
                        state.interrupt_stage(key, job.stage)

    def close(self) -> None:
        ray.kill(self._coordinator)
        if self._owns_connection:
            ray.shutdown()


def _connect(address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at `address`, else start a private one here (no dashboard: nothing to serve)."""
    init: dict[str, Any] = {
        "log_to_driver": False,  # workers log to the stage logs; progress comes through the coordinator
        "logging_level": "WARNING",
    }
    if address is None:
        init |= {"address": "local", "include_dashboard": False, "num_cpus": num_cpus or os.cpu_count()}
    else:
        init["address"] = address
    try:
        ray.init(**init)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise MissingPrerequisiteError(f"cannot connect to the Ray cluster at {address}: {exc}") from None


def make(settings: Settings, *, max_retries: int, address: str | None = None) -> RayExecutor:
    """The registry's factory."""
    return RayExecutor(settings, address=address, max_retries=max_retries)
