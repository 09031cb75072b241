"""Known failures: each becomes one readable line and an exit code, never a traceback."""

from __future__ import annotations

import signal
from types import FrameType


class SlscaleError(Exception):
    """A failure the user can act on. The message is the whole story: say what to do."""

    exit_code = 1


class UsageError(SlscaleError):
    """Bad input on the command line or in settings (exit 2, like click's usage errors)."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A size, animal, condition or run that the catalog does not know."""


class MissingPrerequisiteError(SlscaleError):
    """An earlier stage's output, a credential or a resource is missing."""


class MalformedInputError(SlscaleError):
    """A data file that cannot be read as written (file and line named)."""


class StateError(SlscaleError):
    """The state database cannot be opened or is inconsistent."""


class LockedError(SlscaleError):
    """Another live process already works on the same job."""


class HubError(SlscaleError):
    """Publishing to the Hugging Face Hub failed."""


class HubAuthError(HubError):
    """The Hub refused our credentials: retrying will not help."""


class OptionalDependencyError(SlscaleError):
    """An optional backend (vLLM, Unsloth, Ray) is not installed."""

    def __init__(self, package: str, extra: str = "gpu") -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'sl-scaling[{extra}]'")


def describe(error: BaseException) -> str:
    """One line for the DB, the log and the report: our messages as they are, others with their type."""
    if isinstance(error, SlscaleError):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a batch scheduler's stop): handled as Ctrl-C is, so every path that records an
    interruption and keeps finished work runs for it too."""


def interrupt_on_sigterm() -> None:
    """From now on SIGTERM raises `Terminated` in this process's main thread."""

    def terminated(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, terminated)
