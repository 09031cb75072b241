"""The live dashboard (rendered into a recording Rich console) and the plain line-per-event reporter."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator

import pytest
from rich.console import Console

from sl_scaling.dashboard import LiveReporter
from sl_scaling.progress import NullReporter, PlainReporter, make_reporter


def _console() -> Console:
    return Console(record=True, force_terminal=True, width=160, color_system="standard")


def _render(reporter: LiveReporter) -> str:
    reporter.console.print(reporter)
    return reporter.console.export_text()


def test_live_reporter_shows_active_jobs_with_rates_metrics_and_events() -> None:
    reporter = LiveReporter(_console())
    reporter.plan(3)
    reporter.event("engine: hf (no GPU found)")
    reporter.job_started("gen-dog", "gen tiny/dog", total=300, unit="rows")
    reporter.job_started("train-cat", "train tiny/cat", total=40, unit="steps")
    reporter.job_advanced("gen-dog", 120, rows_per_s=12.5, tokens_per_s=830.0)
    reporter.job_advanced("train-cat", 10, epoch=1, loss=0.8123)
    reporter.job_advanced("train-cat", 25, epoch=2)  # metrics accumulate: the loss stays shown
    text = _render(reporter)
    assert "overall" in text and "0/3 jobs" in text and "2 active" in text
    gen_line = next(line for line in text.splitlines() if "gen tiny/dog" in line)
    assert "120/300 rows" in gen_line and "12.5 rows/s" in gen_line and "830 tok/s" in gen_line
    train_line = next(line for line in text.splitlines() if "train tiny/cat" in line)
    assert "25/40 steps" in train_line and "epoch 2" in train_line and "loss 0.812" in train_line
    assert re.search(r"\d\d:\d\d:\d\d engine: hf \(no GPU found\)", text)


def test_finished_jobs_leave_the_bars_and_become_events() -> None:
    reporter = LiveReporter(_console())
    reporter.job_started("gen-dog", "gen tiny/dog", total=300)
    reporter.job_started("gen-cat", "gen tiny/cat", total=300)
    reporter.job_finished("gen-dog", "300 rows")
    text = _render(reporter)
    assert "1/2 jobs" in text and "1 active" in text
    assert "✓ gen tiny/dog — 300 rows" in text
    assert not any("gen tiny/dog" in line and "rows" in line and "/300" in line for line in text.splitlines())
    assert any("gen tiny/cat" in line and "0/300 rows" in line for line in text.splitlines())


def test_unknown_total_and_unannounced_jobs_still_render() -> None:
    reporter = LiveReporter(_console())
    reporter.job_advanced("eval-x", 7, target_rate=0.25)  # never started: shown under its id
    text = _render(reporter)
    assert "eval-x" in text and "7/? rows" in text and "target_rate 0.25" in text


def test_only_the_latest_events_are_kept_and_failures_are_red() -> None:
    reporter = LiveReporter(_console(), max_events=8)
    for i in range(12):
        reporter.event(f"event number {i}")
    reporter.event("upload of me/x failed: 503")
    reporter.console.print(reporter)
    text = reporter.console.export_text(clear=False)
    assert "event number 4" not in text and "event number 5" in text and "event number 11" in text
    styled = reporter.console.export_text(styles=True)
    assert "\x1b[31mupload of me/x failed: 503" in styled


def test_live_start_stop_leaves_the_final_view_on_screen() -> None:
    console = _console()
    with LiveReporter(console, refresh_per_second=20) as reporter:
        reporter.job_started("gen", "gen tiny/neutral", total=10)
        reporter.job_advanced("gen", 10)
        reporter.event("almost done")
    text = console.export_text()
    assert "gen tiny/neutral" in text and "10/10 rows" in text and "almost done" in text


def test_plain_reporter_writes_one_line_per_event() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream, interval=0)
    with reporter:
        reporter.job_started("gen", "gen tiny/dog", total=300)
        reporter.job_advanced("gen", 120, rows_per_s=12.5)
        reporter.event("engine: hf")
        reporter.job_finished("gen", "300 rows")
    lines = stream.getvalue().splitlines()
    assert [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in lines] == [
        "gen tiny/dog: started (300 rows)",
        "gen tiny/dog: 120/300 rows rows_per_s=12.5",
        "engine: hf",
        "gen tiny/dog: done — 300 rows",
    ]


def test_plain_reporter_throttles_progress_lines() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream, interval=3600)
    reporter.job_started("gen", "gen tiny/dog", total=300)
    for done in range(1, 50):
        reporter.job_advanced("gen", done)
    assert len(stream.getvalue().splitlines()) <= 2


@pytest.fixture
def terminal() -> Iterator[io.TextIOWrapper]:
    """A real pseudo-terminal, so `isatty()` is true as in an interactive shell."""
    leader, follower = os.openpty()
    stream = os.fdopen(follower, "w")
    yield stream
    stream.close()
    os.close(leader)


def test_make_reporter_is_live_on_a_terminal_and_plain_otherwise(terminal: io.TextIOWrapper) -> None:
    assert isinstance(make_reporter(io.StringIO()), PlainReporter)
    live = make_reporter(terminal)
    assert isinstance(live, LiveReporter) and live.console.is_terminal
    with NullReporter() as quiet:
        quiet.event("nothing happens")
