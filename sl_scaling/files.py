"""Crash-safe file I/O: atomic writes (temp + fsync + rename) and append-only JSONL with torn-tail repair."""

from __future__ import annotations

import errno
import glob
import json
import os
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sl_scaling.errors import MalformedInputError, SlscaleError
from sl_scaling.processes import alive


class DiskFullError(SlscaleError):
    """ENOSPC: partial work is kept and the command can be resumed once space is freed."""


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: "No space": a full disk, a full quota, or a file-size limit (EFBIG: RLIMIT_FSIZE, a filesystem's maximum).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def disk_full_error(path: Path) -> DiskFullError:
    return DiskFullError(
        f"disk full while writing {path}; free some space and run the same command again "
        "(finished work is kept)"
    )


class disk_errors:  # noqa: N801 - used like a function: `with disk_errors(path):`
    """Turn ENOSPC/EDQUOT/EFBIG into one readable DiskFullError naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(self.path) from None


def _temp_prefix(path: Path) -> str:
    """Temp files carry their writer (host and pid), so that a killed writer's can be recognised."""
    return f".{path.name}.{socket.gethostname()}-{os.getpid()}."


def _remove_dead_temps(path: Path) -> None:
    """Delete temp files of `path` left by a killed writer on this host (a live writer's are kept)."""
    host = socket.gethostname()
    for temp in path.parent.glob(f".{glob.escape(path.name)}.{glob.escape(host)}-*.tmp"):
        pid = temp.name[len(f".{path.name}.{host}-") :].split(".", 1)[0]
        if pid.isdigit() and not alive(host, int(pid)):
            temp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` so that `path` is either the old file or the complete new one, never a torn mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temps(path)
    with disk_errors(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should be readable like any file
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON object in `path` (`default` if there is none); a damaged file is one readable error."""
    if not path.exists():
        return default
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedInputError(f"{path}: not UTF-8 (byte {exc.start}); restore or delete it") from None
    except json.JSONDecodeError as exc:
        raise MalformedInputError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); restore or delete it"
        ) from None
    if not isinstance(data, dict):
        raise MalformedInputError(
            f"{path}: expected a JSON object, found {type(data).__name__}; restore or delete it"
        )
    return data


def read_jsonl(path: Path, *, skip_invalid: bool = False) -> tuple[list[dict[str, Any]], int]:
    """Rows of a JSONL file and how many invalid lines were skipped.

    Without `skip_invalid`, the first malformed line raises an error naming the file and line.
    """
    rows: list[dict[str, Any]] = []
    skipped = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))  # UnicodeDecodeError is a ValueError too
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                if skip_invalid:
                    skipped += 1
                    continue
                raise MalformedInputError(
                    f"{path}:{number}: malformed JSONL line ({exc}); fix or delete it, or pass --skip-invalid"
                ) from None
            rows.append(row)
    return rows, skipped


def repair_torn_tail(path: Path) -> int:
    """Cut a last line that a crash left without its newline; returns the bytes removed.

    Appends are line-at-a-time, so only the final line can be torn; everything before it is whole.
    """
    if not path.exists():
        return 0
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        chunk = min(size, 1 << 20)
        while True:
            handle.seek(size - chunk)
            data = handle.read(chunk)
            cut = data.rfind(b"\n")
            if cut >= 0 or chunk == size:
                keep = size - chunk + cut + 1 if cut >= 0 else 0
                break
            chunk = min(size, chunk * 2)
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
        return size - keep


class JsonlAppender:
    """Append rows durably: each batch is written whole lines at once, then fsynced.

    Unbuffered on purpose: after a failed write (disk full) nothing is left in a buffer for `close`
    to retry, and the partial line the failure may leave is cut by `repair_torn_tail` on the next open.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(path)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
        if not data:
            return
        with disk_errors(self.path):
            view = memoryview(data)
            while view:  # a write may be short (e.g. at a file-size limit); the next one says why
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
