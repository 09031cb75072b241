"""Where `slscale run`'s jobs execute: in this process (`local`) or as Ray tasks (`ray`)."""

from __future__ import annotations

from sl_scaling.executors.base import SKIPPED, Executor, Job, Outcome
from sl_scaling.registry import Backend, Registry
from sl_scaling.settings import Settings

#: Executors by name. To add one: a module with a `make(settings, *, max_retries, address)` factory
#: returning an `Executor`, and one `register` line here.
EXECUTORS = Registry("executor", option="--executor")
EXECUTORS.register(
    Backend("local", "jobs one after another in this process", "sl_scaling.executors.local:make")
)
EXECUTORS.register(
    Backend(
        "ray",
        "each job a Ray task with the GPUs it needs, many at once; see docs/cluster.md",
        "sl_scaling.executors.ray:make",
        package="ray",
        label="Ray",
        extra="cluster",
    )
)

__all__ = ["EXECUTORS", "SKIPPED", "Executor", "Job", "Outcome", "make_executor"]


def make_executor(
    name: str, settings: Settings, *, max_retries: int, ray_address: str | None = None
) -> Executor:
    """The named executor, ready to run jobs (for `ray`: connected to, or started, a cluster)."""
    return EXECUTORS.load(name)(settings, max_retries=max_retries, address=ray_address)
