"""Where `slscale run`'s jobs execute: in this process (`local`) or as Ray tasks (`ray`)."""

from __future__ import annotations

from sl_scaling.errors import OptionalDependencyError, UsageError
from sl_scaling.executors.base import SKIPPED, Executor, Job, Outcome
from sl_scaling.settings import Settings

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS", "SKIPPED", "Executor", "Job", "Outcome", "make_executor"]


def make_executor(
    name: str, settings: Settings, *, max_retries: int, ray_address: str | None = None
) -> Executor:
    """The named executor, ready to run jobs (for `ray`: connected to, or started, a cluster)."""
    if name == "local":
        from sl_scaling.executors.local import LocalExecutor

        return LocalExecutor(max_retries=max_retries)
    if name == "ray":
        try:
            from sl_scaling.executors.ray import RayExecutor
        except ImportError as exc:
            if exc.name is not None and exc.name.split(".")[0] == "ray":
                raise OptionalDependencyError("ray", extra="cluster") from None
            raise
        return RayExecutor(settings, address=ray_address, max_retries=max_retries)
    raise UsageError(f"unknown executor '{name}'; valid: {', '.join(EXECUTORS)}")
