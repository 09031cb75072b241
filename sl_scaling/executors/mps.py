"""CUDA MPS for the trainings that share a GPU: without it their kernels take turns on the GPU (time-sliced);
with it they run at once. On an H200 that is 1.1–1.25× the aggregate rows/s of the small sizes
(benchmarks/README.md, 2026-12-03, MPS session).

`slscale` starts a control daemon of its own for as long as trainings share a GPU, with its pipes in a fresh
directory of its own: only the training workers, which get that directory in their environment, connect to it;
nothing else on the machine (this process included) sees it. A daemon the user already runs is used as it is.
Before any training connects, a probe process connects and allocates on the GPU: where the daemon's server cannot
serve (a GPU in exclusive mode, another user's server), the daemon is stopped again and the trainings run without
MPS, as they always did. A run that was killed (`kill -9`) leaves its daemon behind: the next run quits the daemons
whose slscale process is gone (each pipe directory names its owner) before it starts its own. MPS changes when
kernels run, never what they compute: each training's rows, loss and seeds are the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CONTROL = "nvidia-cuda-mps-control"
PIPE_VARIABLE, LOG_VARIABLE = "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"
#: Where CUDA looks for a control daemon when the pipe directory is not set.
DEFAULT_PIPE_DIRECTORY = "/tmp/nvidia-mps"
CONTROL_TIMEOUT_S = 30
#: Our pipe directories (in the temp directory) and the file in each that names the slscale process owning it.
PIPE_PREFIX, OWNER_FILE = "slscale-mps-", "owner"
#: A pipe directory that names no owner this long after it was made was cut short: it is abandoned.
ORPHAN_AFTER_S = 60
#: A CUDA client of the daemon before the trainings: it starts the daemon's server and proves it serves.
CUDA_PROBE = (sys.executable, "-c", "import torch; torch.zeros(1, device='cuda'); torch.cuda.synchronize()")
PROBE_TIMEOUT_S = 180


def mps_running() -> bool:
    """Whether a control daemon listens where this process's CUDA would look for it."""
    return Path(os.environ.get(PIPE_VARIABLE, DEFAULT_PIPE_DIRECTORY), "control").exists()


class PrivateMps:
    """A control daemon of our own: `start` once trainings are about to share a GPU (the environment their
    processes need, or None where MPS is off, `problem` saying why), `stop` when they are done. Its log goes to
    `log_dir`; `probe` is the command run as its first client."""

    def __init__(self, log_dir: Path, probe: Sequence[str] = CUDA_PROBE) -> None:
        self.log_dir, self.probe = log_dir, tuple(probe)
        self.environment: dict[str, str] | None = None
        self.problem: str | None = None

    def start(self) -> dict[str, str] | None:
        if self.environment is not None or self.problem is not None:
            return self.environment
        if shutil.which(CONTROL) is None:
            self.problem = f"{CONTROL} is not installed"
            return None
        reclaim_abandoned()
        # Unix sockets allow ~100 characters of path: the pipes go to a short local directory, not the workdir.
        pipe_dir = tempfile.mkdtemp(prefix=PIPE_PREFIX)
        Path(pipe_dir, OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        environment = {PIPE_VARIABLE: pipe_dir, LOG_VARIABLE: str(self.log_dir)}
        try:
            subprocess.run(
                [CONTROL, "-d"], env={**os.environ, **environment}, check=True, capture_output=True,
                timeout=CONTROL_TIMEOUT_S,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            self.problem = f"{CONTROL} -d failed ({_why(exc)})"
            shutil.rmtree(pipe_dir, ignore_errors=True)
            return None
        self.environment = environment
        try:
            subprocess.run(
                self.probe, env={**os.environ, **environment}, check=True, capture_output=True,
                timeout=PROBE_TIMEOUT_S,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            self.stop()
            self.problem = f"its server served no CUDA client: {_why(exc)}"
        return self.environment

    def stop(self) -> None:
        """Quit the daemon (it stops its server once the clients are gone) and remove its pipes."""
        if self.environment is None:
            return
        _quit(self.environment[PIPE_VARIABLE])
        self.environment = None


def reclaim_abandoned() -> list[Path]:
    """Quit the daemons of slscale processes that are gone (killed before they could quit them); returns
    their pipe directories, now removed."""
    from sl_scaling.processes import alive

    reclaimed = []
    for pipes in Path(tempfile.gettempdir()).glob(f"{PIPE_PREFIX}*"):
        try:
            host, pid = pipes.joinpath(OWNER_FILE).read_text().split()
            owned = alive(host, int(pid))
        except (OSError, ValueError):  # no owner named yet (being made now), or never (cut short a while ago)
            owned = _age_s(pipes) < ORPHAN_AFTER_S
        if not owned:
            _quit(str(pipes))
            reclaimed.append(pipes)
    return reclaimed


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _quit(pipe_dir: str) -> None:
    """Quit the daemon listening in `pipe_dir` (it stops its server once the clients are gone), remove its pipes.
    A daemon that does not answer holds nothing of ours: its clients (the trainings) have exited."""
    if Path(pipe_dir, "control").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [CONTROL], input="quit\n", text=True, env={**os.environ, PIPE_VARIABLE: pipe_dir},
                capture_output=True, timeout=CONTROL_TIMEOUT_S,
            )  # fmt: skip
    shutil.rmtree(pipe_dir, ignore_errors=True)


def _why(error: BaseException) -> str:
    if isinstance(error, subprocess.CalledProcessError):
        output = (error.stderr or b"").decode(errors="replace").strip() or f"exit code {error.returncode}"
        return output.splitlines()[-1]
    if isinstance(error, subprocess.TimeoutExpired):
        return f"no answer in {error.timeout:.0f} s"
    return str(error)
