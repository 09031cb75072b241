"""The state store: one SQLite file, `<workdir>/slscale.db`, the source of truth for progress.

Files hold the data; this DB says how far each job got. WAL mode and a busy timeout let `status`
and `plot` read while `gen`/`train` write; every multi-row change is one short transaction;
migrations are named and applied whenever the DB opens (simonw/sqlite-utils style).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sl_scaling.catalog import JobKey, Layout
from sl_scaling.errors import SlscaleError, StateError, describe
from sl_scaling.files import disk_full_error
from sl_scaling.processes import alive

BUSY_TIMEOUT_MS = 30_000

PENDING, RUNNING, DONE, FAILED, INTERRUPTED = "pending", "running", "done", "failed", "interrupted"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StageRecord:
    key: JobKey
    stage: str
    status: str
    attempts: int
    started_at: str | None
    finished_at: str | None
    error: str | None
    counts: dict[str, Any]
    throughput: dict[str, Any]
    config: dict[str, Any]


@dataclass(frozen=True)
class EpochRecord:
    key: JobKey
    epoch: int
    train_loss: float | None
    target_rate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    eval: dict[str, Any]
    adapter_path: str | None
    local_deleted: bool
    updated_at: str


@dataclass(frozen=True)
class UploadRecord:
    repo_id: str
    repo_type: str
    kind: str  # dataset | epoch | final
    key: JobKey
    epoch: int | None
    local_path: str
    status: str  # pending | done | failed
    commit: str | None
    error: str | None
    updated_at: str


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Run `;`-separated DDL inside the caller's transaction (`executescript` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_initial(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE stages (
            run INTEGER NOT NULL, size TEXT NOT NULL, condition TEXT NOT NULL, stage TEXT NOT NULL,
            status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            started_at TEXT, finished_at TEXT, error TEXT,
            counts TEXT NOT NULL DEFAULT '{}', throughput TEXT NOT NULL DEFAULT '{}',
            config TEXT NOT NULL DEFAULT '{}', updated_at TEXT NOT NULL,
            PRIMARY KEY (run, size, condition, stage)
        );
        CREATE TABLE epochs (
            run INTEGER NOT NULL, size TEXT NOT NULL, condition TEXT NOT NULL, epoch INTEGER NOT NULL,
            train_loss REAL, target_rate REAL, ci_low REAL, ci_high REAL, n INTEGER,
            eval TEXT NOT NULL DEFAULT '{}', adapter_path TEXT, local_deleted INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (run, size, condition, epoch)
        );
        CREATE TABLE uploads (
            repo_id TEXT PRIMARY KEY, repo_type TEXT NOT NULL, kind TEXT NOT NULL,
            run INTEGER NOT NULL, size TEXT NOT NULL, condition TEXT NOT NULL, epoch INTEGER,
            local_path TEXT NOT NULL, status TEXT NOT NULL, commit_sha TEXT, error TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL,
            run INTEGER, size TEXT, condition TEXT, stage TEXT, kind TEXT NOT NULL, message TEXT NOT NULL
        );
        CREATE INDEX events_ts ON events (ts);
        """,
    )


def _m002_locks(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE locks (
            run INTEGER NOT NULL, size TEXT NOT NULL, condition TEXT NOT NULL, stage TEXT NOT NULL,
            pid INTEGER NOT NULL, host TEXT NOT NULL, since TEXT NOT NULL,
            PRIMARY KEY (run, size, condition, stage)
        );
        """,
    )


#: Named migrations, applied in order, each once. Append; never edit one that has shipped.
MIGRATIONS: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = (
    ("001_initial", _m001_initial),
    ("002_locks", _m002_locks),
)


def _headline(evaluation: dict[str, Any]) -> tuple[Any, ...]:
    """The evaluation numbers the epochs table has columns for, in its column order."""
    return tuple(evaluation.get(k) for k in ("target_rate", "ci_low", "ci_high", "n"))


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


R = TypeVar("R")


def _from_row(record: type[R], row: sqlite3.Row, **converted: Any) -> R:
    """A record from its row: `key` from the key columns, `converted` fields as given, the rest as stored."""
    names = {f.name for f in fields(record)} - {"key", *converted}  # type: ignore[arg-type]
    key = JobKey(row["run"], row["size"], row["condition"])
    return record(key=key, **{name: row[name] for name in names}, **converted)


def _loads(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


class StageLifecycle:
    """A stage's lifecycle, written once: lock → running → done by the body, or interrupted / failed.

    Built only on the store's plain calls (locks and stage rows), so the Ray workers' proxy of the
    store (executors/ray.py) inherits it too.
    """

    # The store's plain calls it is built on (on the proxy they are forwarded, so not declared here).
    acquire_lock: Callable[..., None]
    release_lock: Callable[..., None]
    start_stage: Callable[..., None]
    interrupt_stage: Callable[..., None]
    fail_stage: Callable[..., None]

    @contextmanager
    def locked(self, keys: JobKey | Sequence[JobKey], stage: str) -> Iterator[None]:
        """Claim every key's stage before touching its files (another process may be writing them)."""
        with ExitStack() as stack:
            for key in [keys] if isinstance(keys, JobKey) else keys:
                self.acquire_lock(key, stage)
                stack.callback(self.release_lock, key, stage)
            yield

    @contextmanager
    def recorded(
        self, keys: JobKey | Sequence[JobKey], stage: str, config: dict[str, Any] | None = None
    ) -> Iterator[None]:
        """Mark the stage running; on Ctrl-C interrupted, on an error failed (one line: `describe`).

        The body marks it done (`finish_stage`) once its files are complete and in place.
        """
        keys = [keys] if isinstance(keys, JobKey) else list(keys)
        for key in keys:
            self.start_stage(key, stage, config)
        try:
            yield
        except KeyboardInterrupt:
            for key in keys:
                self.interrupt_stage(key, stage)
            raise
        except Exception as exc:
            for key in keys:
                self.fail_stage(key, stage, describe(exc))
            raise

    @contextmanager
    def running(
        self, keys: JobKey | Sequence[JobKey], stage: str, config: dict[str, Any] | None = None
    ) -> Iterator[None]:
        """A stage's whole lifecycle: lock → running → done by the body, or interrupted / failed."""
        with self.locked(keys, stage), self.recorded(keys, stage, config):
            yield


class StateStore(StageLifecycle):
    """A connection to the state DB. Cheap to open; open one per process (or thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if _write_failed(exc):
                raise _write_error(path, exc) from None
            raise StateError(
                f"cannot use the state database {path}: {exc}. It is left untouched; move it aside "
                "to start a fresh one (the data files under data/ and outputs/ are kept)."
            ) from None
        except PermissionError as exc:
            raise StateError(f"cannot write the state database {path}: {exc.strerror}") from None

    @classmethod
    def open(cls, workdir: Path) -> StateStore:
        return cls(Layout(workdir).db_path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction (BEGIN IMMEDIATE: writers queue on the busy timeout)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self.db.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if _write_failed(exc):
                raise _write_error(self.path, exc) from None
            raise

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every SELECT inside sees the same committed state while writers go on."""
        self.db.execute("BEGIN")
        try:
            yield self.db
        finally:
            self.db.execute("COMMIT")

    def _missing_migrations(self) -> bool:
        """A plain read (no write lock, so opening never waits for a writer) of what is applied."""
        try:
            applied = {row["name"] for row in self.db.execute("SELECT name FROM migrations")}
        except sqlite3.OperationalError:  # a new DB: no migrations table yet
            return True
        return any(name not in applied for name, _ in MIGRATIONS)

    def _migrate(self) -> None:
        if not self._missing_migrations():
            return
        with self.transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            applied = {row["name"] for row in db.execute("SELECT name FROM migrations")}
            for name, migrate in MIGRATIONS:
                if name not in applied:
                    migrate(db)
                    db.execute("INSERT INTO migrations VALUES (?, ?)", (name, now()))

    def applied_migrations(self) -> list[str]:
        return [row["name"] for row in self.db.execute("SELECT name FROM migrations ORDER BY name")]

    # --- events ------------------------------------------------------------------------------

    def _event(
        self, db: sqlite3.Connection, key: JobKey | None, stage: str | None, kind: str, message: str
    ) -> None:
        run, size, condition = key.row if key else (None, None, None)
        db.execute(
            "INSERT INTO events (ts, run, size, condition, stage, kind, message) VALUES (?,?,?,?,?,?,?)",
            (now(), run, size, condition, stage, kind, message),
        )

    def log_event(self, key: JobKey | None, stage: str | None, kind: str, message: str) -> None:
        with self.transaction() as db:
            self._event(db, key, stage, kind, message)

    def events(self, limit: int = 20, after_id: int = 0) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM events WHERE id > ? ORDER BY id DESC LIMIT ?", (after_id, limit)
        ).fetchall()
        return [dict(row) for row in reversed(rows)]

    # --- stages ------------------------------------------------------------------------------

    def start_stage(self, key: JobKey, stage: str, config: dict[str, Any] | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                """INSERT INTO stages (run, size, condition, stage, status, attempts, started_at, config, updated_at)
                   VALUES (?,?,?,?,?,1,?,?,?)
                   ON CONFLICT (run, size, condition, stage) DO UPDATE SET
                     status=excluded.status, attempts=attempts+1, started_at=excluded.started_at,
                     finished_at=NULL, error=NULL, config=excluded.config, updated_at=excluded.updated_at""",
                (*key.row, stage, RUNNING, now(), json.dumps(config or {}), now()),
            )
            self._event(db, key, stage, "start", f"{stage} {key} started")

    def update_stage(
        self,
        key: JobKey,
        stage: str,
        *,
        counts: dict[str, Any] | None = None,
        throughput: dict[str, Any] | None = None,
    ) -> None:
        """Progress while running (counts so far, rates): what `status` shows live."""
        with self.transaction() as db:
            db.execute(
                """UPDATE stages SET updated_at=?, counts=COALESCE(?, counts), throughput=COALESCE(?, throughput)
                   WHERE run=? AND size=? AND condition=? AND stage=?""",
                (now(), _json_or_none(counts), _json_or_none(throughput), *key.row, stage),
            )

    def _end_stage(
        self,
        key: JobKey,
        stage: str,
        status: str,
        kind: str,
        message: str,
        error: str | None = None,
        counts: dict[str, Any] | None = None,
        throughput: dict[str, Any] | None = None,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                """INSERT INTO stages (run, size, condition, stage, status, attempts, updated_at)
                   VALUES (?,?,?,?,?,0,?) ON CONFLICT DO NOTHING""",
                (*key.row, stage, status, now()),
            )
            db.execute(
                """UPDATE stages SET status=?, finished_at=?, error=?, updated_at=?,
                     counts=COALESCE(?, counts), throughput=COALESCE(?, throughput)
                   WHERE run=? AND size=? AND condition=? AND stage=?""",
                (
                    status,
                    now(),
                    error,
                    now(),
                    _json_or_none(counts),
                    _json_or_none(throughput),
                    *key.row,
                    stage,
                ),
            )
            self._event(db, key, stage, kind, message)

    def finish_stage(
        self,
        key: JobKey,
        stage: str,
        *,
        counts: dict[str, Any] | None = None,
        throughput: dict[str, Any] | None = None,
    ) -> None:
        """Mark done. Call only after the stage's files are complete and renamed into place."""
        self._end_stage(
            key, stage, DONE, "finish", f"{stage} {key} done", counts=counts, throughput=throughput
        )

    def fail_stage(self, key: JobKey, stage: str, error: str) -> None:
        self._end_stage(key, stage, FAILED, "fail", f"{stage} {key} failed: {error}", error=error)

    def interrupt_stage(self, key: JobKey, stage: str) -> None:
        self._end_stage(
            key, stage, INTERRUPTED, "interrupt", f"{stage} {key} interrupted", error="interrupted"
        )

    def reset_stage(self, key: JobKey, stage: str) -> None:
        """Forget a stage's completion (its files were redone or removed)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE stages SET status=?, finished_at=NULL, updated_at=? WHERE run=? AND size=? AND condition=? AND stage=?",
                (PENDING, now(), *key.row, stage),
            )

    def stage(self, key: JobKey, stage: str) -> StageRecord | None:
        row = self.db.execute(
            "SELECT * FROM stages WHERE run=? AND size=? AND condition=? AND stage=?",
            (*key.row, stage),
        ).fetchone()
        return None if row is None else self._stage_record(row)

    def is_done(self, key: JobKey, stage: str) -> bool:
        record = self.stage(key, stage)
        return record is not None and record.status == DONE

    def stages(self) -> list[StageRecord]:
        rows = self.db.execute("SELECT * FROM stages ORDER BY run, size, condition, stage").fetchall()
        return [self._stage_record(row) for row in rows]

    @staticmethod
    def _stage_record(row: sqlite3.Row) -> StageRecord:
        loaded = {name: _loads(row[name]) for name in ("counts", "throughput", "config")}
        return _from_row(StageRecord, row, **loaded)

    # --- epochs ------------------------------------------------------------------------------

    def record_epoch(
        self,
        key: JobKey,
        epoch: int,
        *,
        train_loss: float | None,
        evaluation: dict[str, Any],
        adapter_path: str | None,
    ) -> None:
        """Upsert one epoch (so a resumed or re-evaluated epoch never appears twice)."""
        with self.transaction() as db:
            db.execute(
                """INSERT INTO epochs (run, size, condition, epoch, train_loss, target_rate, ci_low, ci_high,
                                       n, eval, adapter_path, local_deleted, updated_at)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?)
                   ON CONFLICT (run, size, condition, epoch) DO UPDATE SET
                     train_loss=COALESCE(excluded.train_loss, train_loss), target_rate=excluded.target_rate,
                     ci_low=excluded.ci_low, ci_high=excluded.ci_high, n=excluded.n, eval=excluded.eval,
                     adapter_path=COALESCE(excluded.adapter_path, adapter_path), updated_at=excluded.updated_at""",
                (
                    *key.row,
                    epoch,
                    train_loss,
                    *_headline(evaluation),
                    json.dumps(evaluation),
                    adapter_path,
                    now(),
                ),
            )
            self._event(db, key, "train", "epoch", f"{key} epoch {epoch} recorded")

    def mark_local_deleted(self, key: JobKey, epoch: int) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE epochs SET local_deleted=1, updated_at=? WHERE run=? AND size=? AND condition=? AND epoch=?",
                (now(), *key.row, epoch),
            )

    def delete_epochs(self, key: JobKey) -> dict[int, str]:
        """Forget every epoch of a job and its adapters' uploads (a forced retrain starts from scratch,
        and its new adapters must replace the old ones on the Hub: `push` uploads them again).

        Returns the epoch repos that had been uploaded, by epoch: the caller can say which ones the
        retrain will not overwrite (it trains fewer epochs)."""
        where = "run=? AND size=? AND condition=?"
        with self.transaction() as db:
            uploaded = db.execute(
                f"SELECT epoch, repo_id FROM uploads WHERE {where} AND kind='epoch' AND status=?",
                (*key.row, DONE),
            ).fetchall()
            db.execute(f"DELETE FROM epochs WHERE {where}", key.row)
            db.execute(f"DELETE FROM uploads WHERE {where} AND repo_type='model'", key.row)
            self._event(db, key, "train", "reset", f"{key} epochs and adapter uploads forgotten")
        return {row["epoch"]: row["repo_id"] for row in uploaded}

    def epochs(self, key: JobKey) -> list[EpochRecord]:
        rows = self.db.execute(
            "SELECT * FROM epochs WHERE run=? AND size=? AND condition=? ORDER BY epoch",
            key.row,
        ).fetchall()
        return [self._epoch_record(row) for row in rows]

    def all_epochs(self) -> list[EpochRecord]:
        rows = self.db.execute("SELECT * FROM epochs ORDER BY run, size, condition, epoch").fetchall()
        return [self._epoch_record(row) for row in rows]

    @staticmethod
    def _epoch_record(row: sqlite3.Row) -> EpochRecord:
        return _from_row(EpochRecord, row, eval=_loads(row["eval"]), local_deleted=bool(row["local_deleted"]))

    # --- uploads -----------------------------------------------------------------------------

    def plan_upload(
        self, repo_id: str, repo_type: str, kind: str, key: JobKey, epoch: int | None, local_path: str
    ) -> None:
        """Register an upload as pending unless it is already known (done stays done)."""
        with self.transaction() as db:
            db.execute(
                """INSERT INTO uploads (repo_id, repo_type, kind, run, size, condition, epoch, local_path,
                                        status, updated_at)
                   VALUES (?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (repo_id) DO UPDATE SET local_path=excluded.local_path, updated_at=excluded.updated_at
                   WHERE uploads.status != 'done'""",
                (repo_id, repo_type, kind, *key.row, epoch, local_path, PENDING, now()),
            )

    def finish_upload(self, repo_id: str, commit: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE uploads SET status=?, commit_sha=?, error=NULL, updated_at=? WHERE repo_id=?",
                (DONE, commit, now(), repo_id),
            )
            self._event(db, None, "push", "upload", f"uploaded {repo_id}")

    def fail_upload(self, repo_id: str, error: str) -> None:
        """The upload stays pending (it will be retried by the next `push`), with its error."""
        with self.transaction() as db:
            db.execute(
                "UPDATE uploads SET status=?, error=?, updated_at=? WHERE repo_id=?",
                (PENDING, error, now(), repo_id),
            )
            self._event(db, None, "push", "fail", f"upload of {repo_id} failed: {error}")

    def uploads(self, status: str | None = None) -> list[UploadRecord]:
        query, args = "SELECT * FROM uploads", ()
        if status is not None:
            query, args = query + " WHERE status=?", (status,)
        rows = self.db.execute(query + " ORDER BY run, size, condition, kind, epoch", args).fetchall()
        return [_from_row(UploadRecord, row, commit=row["commit_sha"]) for row in rows]

    def upload(self, repo_id: str) -> UploadRecord | None:
        return next((u for u in self.uploads() if u.repo_id == repo_id), None)

    # --- locks -------------------------------------------------------------------------------

    def acquire_lock(self, key: JobKey, stage: str) -> None:
        """Claim (key, stage) for this process; refuse if a live process holds it, take over a dead one's."""
        from sl_scaling.errors import LockedError

        host, pid = socket.gethostname(), os.getpid()
        with self.transaction() as db:
            row = db.execute(
                "SELECT pid, host, since FROM locks WHERE run=? AND size=? AND condition=? AND stage=?",
                (*key.row, stage),
            ).fetchone()
            if (
                row is not None
                and (row["host"], row["pid"]) != (host, pid)
                and alive(row["host"], row["pid"])
            ):
                raise LockedError(
                    f"{stage} {key} is already running (pid {row['pid']} on {row['host']} since "
                    f"{row['since']}); wait for it or stop it first"
                )
            db.execute(
                "INSERT OR REPLACE INTO locks VALUES (?,?,?,?,?,?,?)",
                (*key.row, stage, pid, host, now()),
            )

    def release_lock(self, key: JobKey, stage: str) -> None:
        with self.transaction() as db:
            db.execute(
                "DELETE FROM locks WHERE run=? AND size=? AND condition=? AND stage=? AND pid=? AND host=?",
                (*key.row, stage, os.getpid(), socket.gethostname()),
            )


def _write_failed(exc: sqlite3.Error) -> bool:
    """SQLite could not write: the disk is full (SQLITE_FULL) or a write failed (SQLITE_IOERR_*, e.g. EFBIG)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)


def _write_error(path: Path, exc: sqlite3.Error) -> SlscaleError:
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return disk_full_error(path)
    return StateError(
        f"cannot write the state database {path} ({exc}: is the disk full or failing?); fix it and run "
        "the same command again (finished work is kept)"
    )
