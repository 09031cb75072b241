"""Which libraries' log lines and warnings go to the stage's log file while a stage runs (`library_output.captured`);
the end-to-end check on `slscale train` is tests/reliability/test_library_output.py."""

from __future__ import annotations

import io
import logging
import warnings

import pytest

from sl_scaling.library_output import captured


def test_library_notices_go_to_the_stage_log_not_the_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SLSCALE_VERBOSE", "SLSCALE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    registry = logging.getLogger("liger_kernel.backends.registry")
    handlers = logging.getLogger("liger_kernel").handlers[:]
    log = io.StringIO()
    with captured(log, loads_transformers=False):
        registry.warning("Backend impl 'rope' could not be imported")  # Liger's, on a GPU without CuTe DSL
        logging.getLogger("trl.trainer.sft_trainer").warning("Padding-free training is enabled")
        warnings.warn("use_liger_kernel is deprecated", FutureWarning, stacklevel=1)
    terminal = capsys.readouterr().err
    for line in ("Backend impl", "Padding-free", "use_liger_kernel"):
        assert line in log.getvalue() and line not in terminal
    assert logging.getLogger("liger_kernel").handlers == handlers  # as it was, after the stage


def test_verbose_leaves_library_notices_where_they_would_go(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLSCALE_VERBOSE", "1")
    log = io.StringIO()
    with captured(log, loads_transformers=False):
        logging.getLogger("liger_kernel.backends.registry").warning(
            "Backend impl 'rope' could not be imported"
        )
    assert "Backend impl" in caplog.text and log.getvalue() == ""  # propagated as usual, not to the stage log
