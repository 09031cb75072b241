"""Third-party warnings and log lines go to the stage's log file, not over our own output.

transformers, huggingface_hub, datasets, peft, trl, accelerate, Liger and W&B print notices (token-id
alignment, offline-run URLs, retry lines, deprecations, kernel backends that did not import) that a user of slscale cannot act on and that
garble the dashboard. While a stage runs they are written to its log file instead; `SLSCALE_DEBUG=1`
or `SLSCALE_VERBOSE=1` (`--verbose`) leaves them on the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

#: Loggers of the libraries whose output is captured (their children propagate to them).
LIBRARIES: tuple[str, ...] = (
    "transformers",
    "huggingface_hub",
    "datasets",
    "peft",
    "trl",
    "accelerate",
    "wandb",
    "torch",
    "httpx",
    "filelock",
    "urllib3",
    "liger_kernel",  # on a GPU: which of its kernel backends did not import (CuTe DSL, Ascend)
)
VERBOSE_ENV = "SLSCALE_VERBOSE"


def verbose() -> bool:
    """Whether third-party output stays on the terminal (`--verbose`, `SLSCALE_VERBOSE`, `SLSCALE_DEBUG`)."""
    return any(os.environ.get(name, "") not in ("", "0", "false") for name in (VERBOSE_ENV, "SLSCALE_DEBUG"))


def quiet_progress_bars() -> None:
    """Our reporter shows progress; the libraries' own bars would interleave with it."""
    import datasets
    from transformers.utils import logging as transformers_logging

    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()


@contextmanager
def captured(handle: TextIO, *, loads_transformers: bool) -> Iterator[None]:
    """Send the libraries' log records and every Python warning to `handle` while the block runs.

    transformers installs its stderr handler when first imported; a stage that loads it anyway
    (`loads_transformers`) imports it first, so that handler is in place to be set aside.
    """
    if verbose():
        yield
        return
    if loads_transformers:
        from transformers.utils import logging as transformers_logging

        transformers_logging.get_logger()  # installs its default handler now, not mid-stage
    os.environ.setdefault("WANDB_SILENT", "true")  # W&B's own terminal notices (read when W&B starts)
    handler = logging.StreamHandler(handle)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    saved = []
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers = [handler]
        logger.propagate = False
    show = warnings.showwarning

    def to_log(
        message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        handle.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = to_log
    try:
        yield
    finally:
        warnings.showwarning = show
        for logger, handlers, propagate in saved:
            logger.handlers = handlers
            logger.propagate = propagate
        handle.flush()
        sys.stderr.flush()
