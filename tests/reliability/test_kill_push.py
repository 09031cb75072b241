"""SIGKILL `push` mid-upload (the local Hub stand-in holds a commit), then push again.

Two moments per seed: while a commit request is in flight (the Hub has not applied it), and after
the Hub applied it but before the answer arrived (so the DB cannot know). Either way nothing local
may be deleted before an upload is confirmed, and the next push completes everything exactly once.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import SEEDS, TINY, Running, copy_workdir, db_rows, kill_when, slscale
from hub_stub import HubStub, Repo

from sl_scaling import catalog
from sl_scaling.catalog import JobKey, Layout

USER = "tester"
TOKEN_ENV = {"HF_USER_ID": USER, "HF_TOKEN": "hf_" + "x" * 34}
REPOS = [
    ("dataset", catalog.dataset_repo(USER, TINY, "dog")),
    ("model", catalog.epoch_adapter_repo(USER, TINY, "dog", 1)),
    ("model", catalog.epoch_adapter_repo(USER, TINY, "dog", 2)),
    ("model", catalog.final_adapter_repo(USER, TINY, "dog")),
]


class HoldingHub(HubStub):
    """The Hub stand-in, able to hold one repo's commit before or after applying it.

    A held request stays held until teardown (its client is killed meanwhile), so it can never
    complete later and race with the next push.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held = threading.Event()
        self.hold: tuple[str, bool] | None = None  # (repo id, after applying)
        self.release = threading.Event()  # set at teardown

    def hold_commit(self, repo_id: str, *, after: bool) -> None:
        self.held.clear()
        self.hold = (repo_id, after)

    def _wait_if(self, repo_id: str, after: bool) -> None:
        if self.hold == (repo_id, after):
            self.hold = None
            self.held.set()
            self.release.wait(600)

    def _take_fault(self, path: str, body: bytes) -> str | int | None:
        if self.hold and f"{self.hold[0]}/commit/" in path:
            self._wait_if(self.hold[0], False)
        return super()._take_fault(path, body)

    def commit(self, repo: Repo, body: bytes) -> dict[str, Any]:
        answer = super().commit(repo, body)
        self._wait_if(repo.repo_id, True)
        return answer


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HoldingHub]:
    stub = HoldingHub().start()
    monkeypatch.setenv("HF_ENDPOINT", stub.endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("SLSCALE_HUB_RETRY_WAIT_S", "0")
    yield stub
    stub.release.set()
    stub.stop()


def uploads(workdir: Path) -> dict[str, dict[str, Any]]:
    return {row["repo_id"]: dict(row) for row in db_rows(workdir, "SELECT * FROM uploads")}


def assert_nothing_deleted_unconfirmed(workdir: Path) -> None:
    """A local epoch adapter is gone only if its upload is recorded done (and then marked deleted)."""
    layout = Layout(workdir)
    done = {repo for repo, row in uploads(workdir).items() if row["status"] == "done"}
    for row in db_rows(workdir, "SELECT epoch, adapter_path, local_deleted FROM epochs"):
        repo = catalog.epoch_adapter_repo(USER, TINY, "dog", row["epoch"])
        present = Path(row["adapter_path"]).is_dir()
        assert present or (repo in done and row["local_deleted"]), f"epoch {row['epoch']} lost"
    assert layout.final_checkpoint(JobKey(1, TINY, "dog")).is_dir()
    assert layout.filtered_jsonl(JobKey(1, TINY, "dog")).is_file()


@pytest.mark.parametrize("seed", SEEDS)
def test_push_killed_mid_upload_then_pushed_again_publishes_everything_once(
    seed: int, workdir: Path, trained: Path, hub: HoldingHub, cli: Callable[..., Running]
) -> None:
    copy_workdir(trained, workdir)
    rng = random.Random(seed)
    for after in (False, True):
        pending = [repo for _, repo in REPOS if uploads(workdir).get(repo, {}).get("status") != "done"]
        target = rng.choice(pending)
        hub.hold_commit(target, after=after)
        running = cli("push", env=TOKEN_ENV)
        moment = "applied, unanswered" if after else "in flight"
        kill_when(running, hub.held.is_set, f"the commit to {target} is {moment}")
        assert uploads(workdir)[target]["status"] == "pending"
        assert_nothing_deleted_unconfirmed(workdir)

    result = slscale("push", env=TOKEN_ENV)
    assert result.code == 0, result.output
    assert {repo: row["status"] for repo, row in uploads(workdir).items()} == dict.fromkeys(
        (repo for _, repo in REPOS), "done"
    )
    for repo_type, repo in REPOS:
        files = hub.repo(repo, repo_type).files
        assert "README.md" in files
        assert ("adapter_model.safetensors" in files) == (repo_type == "model")
    layout = Layout(workdir)
    assert not layout.epoch_adapter_dir(JobKey(1, TINY, "dog"), 1).exists()  # confirmed, then deleted
    assert layout.final_checkpoint(JobKey(1, TINY, "dog")).is_dir()  # the final adapter stays
    assert [
        row["local_deleted"] for row in db_rows(workdir, "SELECT local_deleted FROM epochs ORDER BY epoch")
    ] == [1, 0]
    again = slscale("push", env=TOKEN_ENV)
    assert again.code == 0 and "nothing to publish" in again.stdout, again.output
