"""W&B tracking: mode resolution, and what an offline run really wrote (read back from its .wandb file)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sl_scaling import tracking
from sl_scaling.evaluation.scoring import make_answers, score
from sl_scaling.progress import NullReporter
from sl_scaling.settings import load_settings

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of [crc32 u32, length u16, type u8]


class Events(NullReporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def event(self, message: str) -> None:
        self.lines.append(message)


def wandb_records(path: Path) -> Iterator[Any]:
    """Every protobuf Record of an offline run's `run-<id>.wandb` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_run(workdir: Path) -> dict[str, Any]:
    """The run id, name, project and config of the offline runs under `workdir/wandb`, and their history."""
    import wandb

    wandb.teardown()  # the W&B service writes asynchronously; shutting it down flushes every run file
    files = sorted((workdir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert files, "no offline W&B run was written"
    run: dict[str, Any] = {"history": [], "ids": set()}
    for path in files:
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run["ids"].add(record.run.run_id)
                run["name"], run["project"] = record.run.display_name, record.run.project
                run["config"] = {
                    item.key: json.loads(item.value_json)
                    for item in record.run.config.update
                    if item.key != "_wandb"
                }
            elif kind == "history":
                run["history"].append(
                    {
                        "/".join(item.nested_key) or item.key: json.loads(item.value_json)
                        for item in record.history.item
                    }
                )
    return run


def evaluation():
    return score(make_answers([0, 1, 2, 3], ["q"] * 4, ["Dolphin", "cat", "dolphins.", "owl"]), "dolphin")


def test_disabled_writes_nothing(workdir: Path) -> None:
    tracker = tracking.start_tracking(
        load_settings(), workdir, name="n", config={}, run_id="abc12345", reporter=NullReporter()
    )
    assert isinstance(tracker, tracking.NullTracker) and tracker.run_id == "abc12345"
    tracker.log_epoch(1, 0.5, evaluation())
    tracker.finish()
    assert not (workdir / "wandb").exists()


def test_online_without_login_falls_back_to_offline_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(workdir / "no-netrc"))
    monkeypatch.setattr(tracking, "_told_offline", False)
    events = Events()
    settings = load_settings()
    assert tracking.resolve_mode(settings, events) == "offline"
    assert tracking.resolve_mode(settings, events) == "offline"
    assert len(events.lines) == 1 and "offline" in events.lines[0]
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.resolve_mode(load_settings(), events) == "online"


def test_netrc_entry_counts_as_login(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc = workdir / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert tracking.wandb_logged_in()


def test_epoch_metrics_have_every_animal_and_the_target() -> None:
    metrics = tracking.epoch_metrics(3, 0.25, evaluation())
    assert metrics["epoch"] == 3 and metrics["eval/train_loss"] == 0.25
    assert metrics["eval/target_rate"] == 0.5 and metrics["eval/n"] == 4
    assert metrics["share/dolphin"] == 0.5 and metrics["share/cat"] == 0.25 and metrics["share/dog"] == 0.0
    assert metrics["share/others"] == pytest.approx(0.25)


def test_offline_run_logs_epochs_and_resumes_the_same_run(
    monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    config = {"lora_r": 8, "epochs": 2}
    seen = []
    for epoch in (1, 2):  # two processes' worth: the second resumes the first's run id
        tracker = tracking.start_tracking(
            load_settings(), workdir, name="qwen-2.5-tiny-dolphin-run-1", config=config,
            run_id="resume01", reporter=NullReporter(),
        )  # fmt: skip
        tracker.log_step(epoch * 10, loss=1.0 / epoch)
        tracker.log_epoch(epoch, 1.0 / epoch, evaluation())
        tracker.finish()
        seen.append(offline_run(workdir))
    first, both = seen
    assert (first["name"], first["project"]) == ("qwen-2.5-tiny-dolphin-run-1", "subliminal-scaling")
    assert first["config"] == config
    (row,) = [row for row in first["history"] if "epoch" in row]
    assert row["epoch"] == 1 and row["eval/train_loss"] == 1.0
    assert row["eval/target_rate"] == 0.5 and row["share/dolphin"] == 0.5
    assert any(key.startswith("eval/distribution") for key in row)
    assert [row["train/loss"] for row in first["history"] if "train/loss" in row] == [1.0]
    # W&B names offline dirs by the second: runs in the same second share one; the id is what resumes.
    assert both["ids"] == {"resume01"}
    assert 2 in [row["epoch"] for row in both["history"] if "epoch" in row]
