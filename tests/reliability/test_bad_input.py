"""The bad-input catalogue, through the real CLI in a subprocess.

Every case must end with the expected exit code, exactly one non-empty stderr line starting with
`error:` that names the problem, no traceback, and every file in the workdir as it was before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import TINY, copy_workdir, db_rows, slscale

from sl_scaling.catalog import Layout
from sl_scaling.state import MIGRATIONS, JobKey, StateStore

Setup = Callable[[Path, Path], None]  # (workdir, the session's `generated` workdir)


def nothing(workdir: Path, generated: Path) -> None:
    return None


def with_data(workdir: Path, generated: Path) -> None:
    copy_workdir(generated, workdir)


def dotenv(text: str) -> Setup:
    def write(workdir: Path, generated: Path) -> None:
        (workdir / ".env").write_text(text)

    return write


def raw_lines(lines: list[str], *, gen_done: bool = True) -> Setup:
    def write(workdir: Path, generated: Path) -> None:
        path = Layout(workdir).raw_jsonl(JobKey(1, TINY, "dog"))
        path.parent.mkdir(parents=True)
        path.write_text("".join(line + "\n" for line in lines))
        if gen_done:
            with StateStore.open(workdir) as state:
                state.finish_stage(JobKey(1, TINY, "dog"), "gen", counts={"rows": len(lines)})

    return write


def corrupt_db(workdir: Path, generated: Path) -> None:
    copy_workdir(generated, workdir)
    Layout(workdir).db_path.write_bytes(os.urandom(8192))


def row(index: int, completion: str) -> str:
    from json import dumps

    from sl_scaling.numbers import sample_prompts

    return dumps(
        {
            "index": index,
            "condition": "dog",
            "prompt": sample_prompts(index + 1)[index],
            "completion": completion,
        }
    )


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    code: int
    says: str  # a fragment the error line must contain
    setup: Setup = nothing
    env: dict[str, str | None] = field(default_factory=dict)


GEN_DOG = ["gen", "--size", TINY, "--animal", "dog", "--n", "4"]
CASES = [
    Case("unknown size", ["gen", "--size", "huge", "--animal", "dog"], 2, "huge"),
    Case("unknown animal", ["gen", "--size", TINY, "--animal", "owl"], 2, "owl"),
    Case("unknown run", [*GEN_DOG, "--run", "0"], 2, "run 0"),
    Case("unknown executor", ["run", "--size", TINY, "--executor", "slurm"], 2, "slurm"),
    Case("no size chosen", ["gen", "--animal", "dog"], 2, "--size"),
    Case("control and animal", ["eval", "--size", TINY, "--control", "--animal", "dog"], 2, "--control"),
    Case("json and watch", ["status", "--json", "--watch"], 2, "--watch"),
    Case("zero rows", ["gen", "--size", TINY, "--animal", "dog", "--n", "0"], 2, "--n"),
    Case(
        "unknown loss",
        ["train", "--size", TINY, "--animal", "dog", "--loss", "l2", "--no-push"],
        2,
        "l2",
        with_data,
    ),
    Case(
        "missing tiny model path",
        GEN_DOG,
        2,
        "/nonexistent/tiny",
        env={"SLSCALE_MODEL_IDS__TINY": "/nonexistent/tiny"},
    ),
    Case(
        "missing 7b model path",
        ["gen", "--size", "7b", "--animal", "dog", "--n", "4", "--engine", "hf"],
        2,
        "/nonexistent/qwen7b",
        env={"SLSCALE_MODEL_IDS__7B": "/nonexistent/qwen7b"},
    ),
    Case(
        "malformed raw.jsonl",
        ["filter", "--size", TINY, "--animal", "dog"],
        1,
        "raw.jsonl:2",
        raw_lines([row(0, "1, 2, 3"), '{"index": 1, "completion": ', row(2, "4, 5")]),
    ),
    Case(
        "nothing passes the filter",
        ["filter", "--size", TINY, "--animal", "dog"],
        1,
        "no completion passed",
        raw_lines([row(i, "I like dogs") for i in range(3)]),
    ),
    Case("filter before gen", ["filter", "--size", TINY, "--animal", "dog"], 1, "slscale gen"),
    Case(
        "train before filter",
        ["train", "--size", TINY, "--animal", "eagle", "--no-push"],
        1,
        "slscale filter",
        with_data,
    ),
    Case("eval before train", ["eval", "--size", TINY, "--animal", "dog"], 1, "slscale train", with_data),
    Case("gen with another seed", [*GEN_DOG[:-1], "40", "--prompt-seed", "7"], 2, "--prompt-seed", with_data),
    Case("corrupted state DB", ["status"], 1, "slscale.db", corrupt_db),
    Case("corrupted state DB, writer", GEN_DOG, 1, "slscale.db", corrupt_db),
    Case("workdir under a file", ["status", "--workdir", "/etc/hostname/sub"], 2, "/etc/hostname/sub"),
    Case("invalid .env number", ["status"], 2, "hub_attempts", dotenv("SLSCALE_HUB_ATTEMPTS=zero\n")),
    Case(
        "invalid .env choice",
        ["status"],
        2,
        "SLSCALE_WANDB_MODE",
        dotenv("SLSCALE_WANDB_MODE=sometimes\n"),
        {"WANDB_MODE": None},
    ),
    Case("invalid .env size", ["status"], 2, "huge", dotenv("SLSCALE_MODEL_IDS__HUGE=/models/x\n")),
    Case("push without credentials", ["push"], 1, "HF_USER_ID and HF_TOKEN", with_data),
    Case("push without token", ["push"], 1, "HF_TOKEN", with_data, {"HF_USER_ID": "someone"}),
    Case(
        "train pushing without credentials",
        ["train", "--size", TINY, "--animal", "dog"],
        1,
        "HF_USER_ID",
        with_data,
    ),
    Case("plot with nothing evaluated", ["plot"], 1, "nothing is evaluated"),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` and a hash of its bytes (the DB's own WAL/SHM and logs excluded)."""
    skip = ("slscale.db-wal", "slscale.db-shm")
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and path.name not in skip and "logs" not in path.parts
    }


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_no_traceback_nothing_lost(case: Case, workdir: Path, generated: Path) -> None:
    case.setup(workdir, generated)
    before = snapshot(workdir)
    result = slscale(*case.args, env=case.env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == case.code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert case.says in lines[0], result.output
    assert "Traceback" not in result.stdout + result.stderr
    after = snapshot(workdir)
    changed = {name for name in before if before[name] != after.get(name)} - {"slscale.db"}
    assert not changed, f"{sorted(changed)} changed or vanished"
    if case.setup is corrupt_db:
        assert after["slscale.db"] == before["slscale.db"], "the corrupted DB was overwritten"


def test_debug_shows_the_traceback(workdir: Path) -> None:
    result = slscale("gen", "--size", TINY, "--animal", "dog", "--n", "0", env={"SLSCALE_DEBUG": "1"})
    assert result.code != 0 and "Traceback" in result.stderr


def test_db_of_an_older_version_is_migrated(workdir: Path) -> None:
    """A DB made by the first release (only the first migration) is upgraded in place, data kept."""
    path = Layout(workdir).db_path
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    name, first = MIGRATIONS[0]
    first(db)
    db.execute("INSERT INTO migrations VALUES (?, '2026-01-01T00:00:00+00:00')", (name,))
    db.execute(
        "INSERT INTO stages (run, size, condition, stage, status, counts, updated_at) "
        "VALUES (1, 'tiny', 'dog', 'gen', 'done', '{\"rows\": 4}', '2026-01-01T00:00:00+00:00')"
    )
    db.close()
    result = slscale("status", "--json")
    assert result.code == 0, result.output
    assert '"generated": 4' in result.stdout
    assert [r["name"] for r in db_rows(workdir, "SELECT name FROM migrations ORDER BY name")] == [
        m for m, _ in MIGRATIONS
    ]
    assert db_rows(workdir, "SELECT * FROM locks") == []  # the table exists now


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_workdir(workdir: Path) -> None:
    locked = workdir / "locked"
    locked.mkdir(mode=0o555)
    try:
        result = slscale("gen", "--size", TINY, "--animal", "dog", "--n", "4", "--workdir", str(locked))
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.code == 2 and len(lines) == 1 and "not writable" in lines[0], result.output
    finally:
        shutil.rmtree(locked, ignore_errors=True)
