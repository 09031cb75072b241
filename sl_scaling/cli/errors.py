"""Known errors → one red line on stderr and an exit code; Ctrl-C → 130, SIGTERM → 143; tracebacks only
when asked."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from sl_scaling.errors import SlscaleError, Terminated

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + the signal, as a shell reports them


def debug_enabled() -> bool:
    return os.environ.get("SLSCALE_DEBUG", "") not in ("", "0", "false")


def error_line(message: str) -> None:
    """Print one red line to stderr (Rich markup in `message` is not interpreted)."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"error: {message}", style="bold red", markup=False)


class ErrorHandlingGroup(TyperGroup):
    """Wraps every command so that tests (CliRunner) and the console script fail the same way."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as exc:
            if _is_usage_error(exc) and not debug_enabled():  # one line, not click's usage box
                ctx = getattr(exc, "ctx", None)
                error_line(f"{exc.format_message()} (see '{ctx.command_path if ctx else 'slscale'} -h')")
                raise typer.Exit(2) from None
            raise
        except SlscaleError as exc:
            if debug_enabled():
                raise
            error_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:  # `slscale … | head`: the reader left; nothing to report
            sys.stderr.close()
            raise typer.Exit(0) from None
        except KeyboardInterrupt as exc:
            if debug_enabled():
                raise
            how, code = (
                ("terminated (SIGTERM)", EXIT_TERMINATED)
                if isinstance(exc, Terminated)
                else ("interrupted", EXIT_INTERRUPTED)
            )
            error_line(f"{how}; finished work is kept, run the same command again to resume")
            raise typer.Exit(code) from None
        except Exception as exc:  # the last line of defence: one line, not a traceback
            if debug_enabled():
                raise
            if _out_of_memory(exc):
                error_line(
                    "the GPU ran out of memory; run the same command again with a smaller --batch-size "
                    "(e.g. half), finished work is kept"
                )
                raise typer.Exit(1) from None
            error_line(
                f"unexpected {type(exc).__name__}: {exc} (run again with SLSCALE_DEBUG=1 for the traceback)"
            )
            raise typer.Exit(1) from None


def _is_usage_error(exc: BaseException) -> bool:
    """Click's UsageError (bad option, value out of range, unknown command), which Typer vendors."""
    return getattr(exc, "exit_code", None) == 2 and callable(getattr(exc, "format_message", None))


def _out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError, checked without importing torch (a command that never loaded it has none)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.OutOfMemoryError)
