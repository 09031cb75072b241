"""Processes: whether one that left its mark (a DB lock, a temp file) still runs, and how CPU workers start."""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.process
import os
import socket
from collections.abc import Callable, Mapping


def alive(host: str, pid: int) -> bool:
    """True while `pid` runs on this host; a process on another host is assumed alive (we cannot see it)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: What a CPU worker process imports before its first step (the training and HF engine stacks): ~30 s of
#: CPU per process where the libraries have no bytecode caches (an install that skips compiling them, as
#: `uv pip install` does by default), ~10 s with them. The fork server imports them once.
CPU_WORKER_PRELOAD = (
    "sl_scaling.stages.train",
    "sl_scaling.engines.hf",
    "peft",
    "transformers.models.qwen2.modeling_qwen2",
)


def cpu_workers() -> multiprocessing.context.BaseContext:
    """The multiprocessing context for worker processes that stay on the CPU (a tiny model's training lanes,
    the HF engine's generation helpers): forks of a server that has imported `CPU_WORKER_PRELOAD`, so each
    worker starts in a second instead of paying the imports again. A fork starts from a clean server (no
    threads, no model, no random state in use), and each job seeds what it samples from itself, as it did in
    a spawned process. Not for GPU workers: a fork server that had touched CUDA would hand broken state on.
    Start their processes with `start_worker`. Where fork servers do not exist (Windows), spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(CPU_WORKER_PRELOAD))
    return context


def start_cpu_workers_now() -> None:
    """Start the fork server of `cpu_workers` now instead of at its first worker: its imports (~18 s of a
    core) then run beside the driver's own start (imports, model load, the prompts' encoding), and the first
    generation helper starts as soon as the driver generates instead of ~20 s later."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        cpu_workers()
        multiprocessing.forkserver.ensure_running()


def start_worker(
    context: multiprocessing.context.BaseContext,
    target: Callable[..., object],
    *args: object,
    name: str | None = None,
    daemon: bool | None = None,
    environment: Mapping[str, str] | None = None,
) -> multiprocessing.process.BaseProcess:
    """Start `target(*args)` in a process of `context`, in this process's environment as it is now (a fork
    server's children would otherwise get the server's, as it was when the server started) plus `environment`."""
    environ = {**os.environ, **(environment or {})}
    process = context.Process(target=_in_environ, args=(environ, target, *args), name=name, daemon=daemon)
    process.start()
    return process


def _in_environ(environ: dict[str, str], target: Callable[..., object], *args: object) -> None:
    """Run `target` in `environ`. What the worker inherits (a fork server's imported stack: millions of
    objects that are never garbage) is frozen out of garbage collection first: a collection that walks them
    also writes to them, which copies every page the worker shares with the server. The full collections
    each training runs (accelerate's at its start, ours at its end) and the automatic ones skip them now: a
    tiny training in a lane took ~20 s instead of ~27 s (an in-process training gains nothing from it)."""
    gc.freeze()
    os.environ.clear()
    os.environ.update(environ)
    target(*args)
