"""The bad-input catalogue, through the real CLI in a subprocess.

Every case must end with the expected exit code, exactly one non-empty stderr line starting with
`error:` that names the problem, no traceback, and every file in the workdir as it was before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import TINY, copy_workdir, db_rows, slscale

from sl_scaling.catalog import Layout
from sl_scaling.state import MIGRATIONS, JobKey, StateStore

Setup = Callable[[Path, Path], None]  # (workdir, the session's `generated` workdir)
DOG = JobKey(1, TINY, "dog")


def nothing(workdir: Path, generated: Path) -> None:
    return None


def with_data(workdir: Path, generated: Path) -> None:
    copy_workdir(generated, workdir)


def dotenv(text: str | bytes) -> Setup:
    def write(workdir: Path, generated: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (workdir / ".env").write_bytes(data)

    return write


def dotenv_directory(workdir: Path, generated: Path) -> None:
    (workdir / ".env").mkdir()


def damaged(path_of: Callable[[Layout], Path], content: bytes, *, data: bool = True) -> Setup:
    """A file of the generated workdir replaced by `content` (as a hand edit or a bad copy leaves it)."""

    def write(workdir: Path, generated: Path) -> None:
        if data:
            copy_workdir(generated, workdir)
        path = path_of(Layout(workdir))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    return write


def filtered(layout: Layout) -> Path:
    return layout.filtered_jsonl(DOG)


def raw(layout: Layout) -> Path:
    return layout.raw_jsonl(DOG)


def eval_file(layout: Layout) -> Path:
    return layout.eval_json(DOG)


def train_config(layout: Layout) -> Path:
    return layout.finetune_dir(DOG) / "train_config.json"


def raw_lines(lines: list[str], *, gen_done: bool = True) -> Setup:
    def write(workdir: Path, generated: Path) -> None:
        path = Layout(workdir).raw_jsonl(JobKey(1, TINY, "dog"))
        path.parent.mkdir(parents=True)
        path.write_text("".join(line + "\n" for line in lines))
        if gen_done:
            with StateStore.open(workdir) as state:
                state.finish_stage(JobKey(1, TINY, "dog"), "gen", counts={"rows": len(lines)})

    return write


def raw_bytes(content: bytes) -> Setup:
    def write(workdir: Path, generated: Path) -> None:
        raw_lines([])(workdir, generated)
        Layout(workdir).raw_jsonl(DOG).write_bytes(content)

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
    # numbers out of range or not numbers: refused while parsing, before anything starts
    Case("zero epochs", ["run", "--size", TINY, "--epochs", "0", "--no-push"], 2, "--epochs"),
    Case("negative rows", ["run", "--size", TINY, "--n", "-5", "--no-push"], 2, "--n"),
    Case("zero answers", ["train", "--size", TINY, "--animal", "dog", "--samples", "0"], 2, "--samples"),
    Case("zero batch", [*GEN_DOG, "--batch-size", "0"], 2, "--batch-size"),
    Case("zero token cap", [*GEN_DOG, "--max-new-tokens", "0"], 2, "--max-new-tokens"),
    Case("zero grad accumulation", ["train", "--size", TINY, "--grad-accum", "0"], 2, "--grad-accum"),
    Case("negative seed", [*GEN_DOG, "--seed", "-1"], 2, "--seed"),
    Case("epoch zero", ["eval", "--size", TINY, "--animal", "dog", "--epoch", "0"], 2, "--epoch"),
    Case("rows not a number", ["gen", "--size", TINY, "--n", "many"], 2, "--n"),
    Case("unknown option", [*GEN_DOG, "--fast"], 2, "--fast"),
    Case("unknown command", ["generate"], 2, "generate"),
    # .env files a user may have
    Case("malformed .env", ["status"], 2, ".env line 2", dotenv("HF_USER_ID=me\nthis is not a setting\n")),
    Case("non-UTF-8 .env", ["status"], 2, "not UTF-8", dotenv(b"HF_USER_ID=\xff\xfeme\n")),
    Case("unreadable .env", ["status"], 2, ".env", dotenv_directory),
    # a model that is nowhere: found in seconds, before any stage starts, with the fix
    Case(
        "model neither local, cached nor reachable",
        ["run", "--size", TINY, "--animal", "dog", "--no-push"],
        1,
        "SLSCALE_MODEL_IDS__TINY",
        env={"SLSCALE_MODEL_IDS__TINY": "nobody/no-such-model"},
    ),
    # hand-damaged data files
    Case(
        "filtered.jsonl not UTF-8",
        ["train", "--size", TINY, "--animal", "dog", "--no-push"],
        1,
        "filtered.jsonl:1",
        damaged(filtered, b'{"index": 0, "prompt": "\xff", "completion": "1"}\n'),
    ),
    Case(
        "filtered.jsonl with wrong types",
        ["train", "--size", TINY, "--animal", "dog", "--no-push"],
        1,
        "row 1",
        damaged(filtered, b'{"index": 0, "prompt": "p", "completion": 123}\n'),
    ),
    Case(
        "filtered.jsonl truncated",
        ["train", "--size", TINY, "--animal", "dog", "--no-push"],
        1,
        "filtered.jsonl:1",
        damaged(filtered, b'{"index": 0, "prompt": "p", "compl'),
    ),
    Case(
        "raw.jsonl without prompts",
        ["filter", "--size", TINY, "--animal", "dog"],
        1,
        "row 1",
        raw_lines(['{"index": 0, "completion": "1, 2"}']),
    ),
    Case(
        "raw.jsonl not UTF-8",
        ["filter", "--size", TINY, "--animal", "dog"],
        1,
        "raw.jsonl:1",
        raw_bytes(b'{"index": 0, "prompt": "p", "completion": "\xff"}\n'),
    ),
    Case("eval file not JSON", ["plot"], 1, "dog_eval.json", damaged(eval_file, b"{not json")),
    Case("eval file a list", ["plot"], 1, "dog_eval.json", damaged(eval_file, b"[]")),
    Case("eval file not UTF-8", ["report"], 1, "dog_eval.json", damaged(eval_file, b"\xff\xfe{}")),
    Case(
        "eval file, an epoch a number", ["report"], 1, "dog_eval.json", damaged(eval_file, b'{"epochs": [5]}')
    ),
    Case(
        "eval file, epoch not a number",
        ["plot"],
        1,
        "whole-number 'epoch'",
        damaged(eval_file, b'{"epochs": [{"epoch": "one"}]}'),
    ),
    Case(
        "eval file, an epoch without shares",
        ["plot"],
        1,
        "no readable shares",
        damaged(eval_file, b'{"epochs": [{"epoch": 1, "n": 5}]}'),
    ),
    Case(
        "train_config.json with wrong types",
        ["train", "--size", TINY, "--animal", "dog", "--no-push"],
        1,
        "train_config.json: not a training configuration",
        damaged(train_config, b'{"epochs": "two", "target_modules": 5}'),
    ),
    Case(
        "train_config.json truncated",
        ["train", "--size", TINY, "--animal", "dog", "--no-push"],
        1,
        "train_config.json: not valid JSON",
        damaged(train_config, b'{"lora_r": 8'),
    ),
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
    result = slscale("gen", "--size", "huge", "--animal", "dog", env={"SLSCALE_DEBUG": "1"})
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


def test_train_refuses_missing_credentials_before_loading_the_training_stack(tmp_path: Path) -> None:
    """The refusal takes an instant: nothing of torch, transformers or TRL is imported before it."""
    code = (
        "import sys\n"
        "from sl_scaling.cli.app import main\n"
        "sys.argv = ['slscale', 'train', '--size', 'tiny', '--animal', 'dog']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code, *(name in sys.modules for name in ('torch', 'transformers', 'trl')))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "SLSCALE_HF_"))}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120
    )
    assert "HF_USER_ID and HF_TOKEN not set" in result.stderr + result.stdout
    assert result.stdout.strip().splitlines()[-1] == "exit 1 False False False"
