"""Fixtures of the reliability suite: background `slscale` processes and prepared workdirs (see harness.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from harness import GEN, TINY, Running, prepare


@pytest.fixture
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Running]]:
    """`cli(*args, env=...)` starts `slscale ARGS` in the background; every one is killed at teardown."""
    started: list[Running] = []
    logs = tmp_path_factory.mktemp("cli-logs")

    def start(*args: str, env: Mapping[str, str | None] | None = None) -> Running:
        started.append(Running(list(args), logs, env))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory, tiny_cache: Path, tiny_model: Path) -> Path:
    """A workdir where `gen` and `filter` finished for tiny/dog (GEN_N rows)."""
    root = tmp_path_factory.mktemp("generated")
    return prepare(
        root,
        [["gen", "--size", TINY, "--animal", "dog", *GEN], ["filter", "--size", TINY, "--animal", "dog"]],
        tiny_cache,
    )


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_cache: Path, generated: Path) -> Path:
    """`generated` plus a finished 2-epoch training of tiny/dog, nothing pushed."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(generated, root, dirs_exist_ok=True)
    args = ["train", "--size", TINY, "--animal", "dog", "--epochs", "2", "--samples", "10", "--no-push"]
    return prepare(root, [args], tiny_cache)
