"""The SQLite state store: migrations, upserts, locks, and readers that never wait on a writer."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sl_scaling.errors import LockedError, StateError
from sl_scaling.state import DONE, MIGRATIONS, RUNNING, JobKey, StateStore

KEY = JobKey(1, "tiny", "dolphin")


def test_migrations_are_applied_once_and_recorded(tmp_path: Path) -> None:
    names = [name for name, _ in MIGRATIONS]
    with StateStore.open(tmp_path) as state:
        assert state.applied_migrations() == names
        first = state.db.execute("SELECT name, applied_at FROM migrations ORDER BY name").fetchall()
    with StateStore.open(tmp_path) as state:  # reopening applies nothing again
        again = state.db.execute("SELECT name, applied_at FROM migrations ORDER BY name").fetchall()
        assert [tuple(row) for row in again] == [tuple(row) for row in first]
        tables = {row[0] for row in state.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"stages", "epochs", "uploads", "events", "locks", "migrations"} <= tables


def test_wal_mode_and_busy_timeout(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as state:
        assert state.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert state.db.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_stage_lifecycle_survives_reopen(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as state:
        state.start_stage(KEY, "gen", config={"n": 300})
        assert state.stage(KEY, "gen").status == RUNNING
        state.update_stage(KEY, "gen", counts={"rows": 100})
        state.finish_stage(KEY, "gen", counts={"rows": 300}, throughput={"rows_per_s": 5.0})
    with StateStore.open(tmp_path) as state:
        record = state.stage(KEY, "gen")
        assert record.status == DONE
        assert record.counts == {"rows": 300}
        assert record.throughput == {"rows_per_s": 5.0}
        assert record.config == {"n": 300}
        assert state.is_done(KEY, "gen")
        assert not state.is_done(KEY, "filter")
        kinds = [event["kind"] for event in state.events()]
    assert kinds == ["start", "finish"]


def test_a_restarted_stage_counts_attempts(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as state:
        state.start_stage(KEY, "train")
        state.fail_stage(KEY, "train", "out of memory")
        assert state.stage(KEY, "train").error == "out of memory"
        state.start_stage(KEY, "train")
        record = state.stage(KEY, "train")
    assert (record.attempts, record.status, record.error) == (2, RUNNING, None)


def test_upserted_epochs_never_duplicate(tmp_path: Path) -> None:
    evaluation = {"target_rate": 0.1, "ci_low": 0.05, "ci_high": 0.2, "n": 100}
    with StateStore.open(tmp_path) as state:
        state.record_epoch(KEY, 1, train_loss=1.5, evaluation=evaluation, adapter_path="/a/epoch-1")
        state.record_epoch(KEY, 2, train_loss=1.2, evaluation=evaluation, adapter_path="/a/epoch-2")
        # re-evaluation of epoch 1: new results, loss and adapter path kept
        state.record_epoch(
            KEY, 1, train_loss=None, evaluation={**evaluation, "target_rate": 0.3}, adapter_path=None
        )
        epochs = state.epochs(KEY)
    assert [e.epoch for e in epochs] == [1, 2]
    assert (epochs[0].target_rate, epochs[0].train_loss, epochs[0].adapter_path) == (0.3, 1.5, "/a/epoch-1")


def test_uploads_stay_done_once_done(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as state:
        state.plan_upload("me/x-ft", "model", "final", KEY, 10, "/a")
        state.finish_upload("me/x-ft", "abc123")
        state.plan_upload("me/x-ft", "model", "final", KEY, 10, "/b")
        upload = state.upload("me/x-ft")
    assert (upload.status, upload.commit, upload.local_path) == ("done", "abc123", "/a")


def _write_many(db_dir: str, count: int) -> None:
    with StateStore.open(Path(db_dir)) as state:
        for i in range(count):
            state.record_epoch(KEY, i, train_loss=float(i), evaluation={"n": i}, adapter_path=None)


def test_a_reader_in_another_process_reads_while_a_writer_commits(tmp_path: Path) -> None:
    """WAL: a reader sees committed rows only, never blocks on the writer, and never sees a torn epoch."""
    StateStore.open(tmp_path).close()
    writer = multiprocessing.get_context("spawn").Process(target=_write_many, args=(str(tmp_path), 300))
    writer.start()
    seen: list[int] = []
    with StateStore.open(tmp_path) as reader:
        while True:
            finished = not writer.is_alive()
            epochs = reader.epochs(KEY)
            assert [e.epoch for e in epochs] == list(range(len(epochs)))  # a prefix, in order
            assert all(e.eval == {"n": e.epoch} for e in epochs)
            seen.append(len(epochs))
            if finished:
                break
    writer.join()
    assert writer.exitcode == 0
    assert seen == sorted(seen)  # the reader only ever saw progress
    assert seen[-1] == 300


def test_a_reader_is_not_blocked_by_an_open_write_transaction(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as writer, StateStore.open(tmp_path) as reader:
        writer.start_stage(KEY, "gen")
        with writer.transaction() as db:  # an uncommitted write holds the write lock
            db.execute("UPDATE stages SET status='done'")
            assert reader.stage(KEY, "gen").status == RUNNING  # the committed state, without waiting
        assert reader.stage(KEY, "gen").status == DONE


def test_lock_is_refused_while_its_holder_lives_and_names_pid_and_host(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from sl_scaling.state import JobKey, StateStore\n"
            "s = StateStore.open(Path(sys.argv[1])); s.acquire_lock(JobKey(1, 'tiny', 'dolphin'), 'gen')\n"
            "print('locked', flush=True); sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with StateStore.open(tmp_path) as state, pytest.raises(LockedError) as excinfo:
            state.acquire_lock(KEY, "gen")
        message = str(excinfo.value)
        assert f"pid {holder.pid}" in message
        assert "on " in message
        with StateStore.open(tmp_path) as state, state.locked(JobKey(1, "tiny", "cat"), "gen"):
            pass  # other jobs are free
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with StateStore.open(tmp_path) as state, state.locked(KEY, "gen"):  # the holder died: taken over
        row = state.db.execute("SELECT pid FROM locks WHERE condition='dolphin'").fetchone()
        assert row["pid"] != holder.pid


def test_the_same_process_may_reenter_and_release_removes_the_lock(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as state:
        with state.locked(KEY, "train"):
            state.acquire_lock(KEY, "train")
        assert state.db.execute("SELECT COUNT(*) FROM locks").fetchone()[0] == 0


def test_a_corrupt_database_is_one_actionable_error(tmp_path: Path) -> None:
    (tmp_path / "slscale.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError) as excinfo:
        StateStore.open(tmp_path)
    assert "slscale.db" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_sqlite_is_the_file_the_layout_names(tmp_path: Path) -> None:
    StateStore.open(tmp_path).close()
    assert sqlite3.connect(tmp_path / "slscale.db").execute("SELECT COUNT(*) FROM migrations").fetchone()[0]
