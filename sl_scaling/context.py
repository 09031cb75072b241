"""What every command needs first: settings, the layout of the working directory and the state store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sl_scaling.catalog import Layout
from sl_scaling.errors import UsageError
from sl_scaling.settings import Settings, load_settings
from sl_scaling.state import StateStore


@dataclass
class Context:
    settings: Settings
    layout: Layout

    def state(self) -> StateStore:
        return StateStore.open(self.layout.workdir)


def make_context(workdir: Path | None) -> Context:
    settings = load_settings(workdir=workdir)
    root = settings.workdir.expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the working directory {root}: {exc.strerror}") from None
    if not os.access(root, os.W_OK):
        raise UsageError(f"the working directory {root} is not writable; choose another with --workdir")
    settings.workdir = root
    return Context(settings=settings, layout=Layout(root))
