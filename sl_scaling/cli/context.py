"""Moved to `sl_scaling.context` (stages use it too; cli must not be imported from below)."""

from sl_scaling.context import Context, make_context

__all__ = ["Context", "make_context"]
