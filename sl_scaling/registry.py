"""Backends registered by name: engines, trainers, executors. The lazy import *is* the registry entry.

A backend is one module plus one `register(...)` line: its name, a one-line summary (for `--help` and
for saying what was chosen), where its factory lives, and the optional package it needs. Nothing is
imported until the backend is used, so a CPU-only install never imports vLLM, Unsloth or Ray, and a
missing package is the one-line "pip install" error. `auto` picks the preferred backend when it is
usable and says why; otherwise the fallback, saying why not.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sl_scaling.errors import MissingPrerequisiteError, OptionalDependencyError, UsageError

AUTO = "auto"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class Backend:
    name: str
    #: What it is, for `--help` and "…, as requested".
    summary: str
    #: `module:attribute` of the factory, imported only when the backend is used.
    factory: str
    #: The optional package it needs (None: part of the base install), how it is called, and its extra.
    package: str | None = None
    label: str = ""
    extra: str = "gpu"
    needs_cuda: bool = False

    def installed(self) -> bool:
        return self.package is None or importlib.util.find_spec(self.package) is not None

    def load(self) -> Any:
        """The factory; a missing optional package is the one-line "pip install" error."""
        module, _, attribute = self.factory.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except ImportError as exc:
            if self.package and exc.name is not None and exc.name.split(".")[0] == self.package:
                raise OptionalDependencyError(self.package, extra=self.extra) from None
            raise


@dataclass(frozen=True)
class Preference:
    """What `auto` prefers over the fallback, an extra objection it may raise, and why it was picked."""

    name: str
    #: For `--help`: when it is picked.
    when: str
    #: Said when it is picked.
    reason: str
    objection: Callable[[], str | None] | None = None


class Registry:
    """The backends of one kind (`engine`, `trainer`, `executor`); the first registered is the fallback."""

    def __init__(self, kind: str, *, option: str) -> None:
        self.kind = kind
        self.option = option
        self._backends: dict[str, Backend] = {}
        self.preference: Preference | None = None

    def register(self, backend: Backend) -> None:
        self._backends[backend.name] = backend

    def prefer(self, preference: Preference) -> None:
        self.preference = preference

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._backends)

    @property
    def fallback(self) -> str:
        return self.names[0]

    def help(self) -> str:
        """`auto (…), hf (…), vllm (…)`, for an option's help, from the registered summaries."""
        parts = [f"{b.name} ({b.summary})" for b in self._backends.values()]
        if self.preference is not None:
            preferred = self.preference
            parts.insert(
                0, f"{AUTO} ({preferred.name} if {preferred.when}, else {self.fallback}; says which)"
            )
        return ", ".join(parts)

    def get(self, name: str) -> Backend:
        backend = self._backends.get(name.strip().lower())
        if backend is None:
            raise UsageError(f"unknown {self.kind} '{name}'; valid: {', '.join(self.names)}")
        return backend

    def load(self, name: str) -> Any:
        """The factory of a chosen (not `auto`) backend."""
        return self.get(name).load()

    def choose(self, requested: str) -> tuple[str, str]:
        """The backend to use and a sentence saying why; `auto` resolves to the preferred one when usable."""
        name = requested.strip().lower()
        if name == AUTO and self.preference is not None:
            return self._auto(self.preference)
        if name not in self._backends:
            valid = ", ".join((AUTO, *self.names) if self.preference else self.names)
            raise UsageError(f"unknown {self.kind} '{requested}'; valid: {valid}")
        backend = self._backends[name]
        if not backend.installed():
            raise OptionalDependencyError(backend.package or name, extra=backend.extra)
        if backend.needs_cuda and not cuda_available():
            raise MissingPrerequisiteError(
                f"{backend.label} needs a CUDA GPU and none is visible; use {self.option} {self.fallback}"
            )
        return name, f"{self.kind} {name}: {backend.summary}, as requested"

    def _auto(self, preference: Preference) -> tuple[str, str]:
        backend = self._backends[preference.name]
        if not backend.installed():
            why = f"{backend.label} is not installed (pip install 'sl-scaling[{backend.extra}]' for it)"
        elif backend.needs_cuda and not cuda_available():
            why = f"{backend.label} is installed but no CUDA GPU is visible"
        elif preference.objection is not None and (objection := preference.objection()):
            why = objection
        else:
            return preference.name, f"{self.kind} {preference.name}: {preference.reason}"
        return self.fallback, f"{self.kind} {self.fallback}: {why}"
