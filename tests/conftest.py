"""Every test runs in its own working directory, offline, with no credentials leaking in."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hub_stub import HubStub

# One intra-op thread: the tiny model gains nothing from two, and with tests that start subprocesses
# OpenMP threads oversubscribe the 2 CI cores and spin (measured: generate 6× slower with 2 threads).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# A suite started in the background by a script (`cmd &`, nohup) inherits SIGINT ignored, and so would every
# slscale it starts (an ignored signal stays ignored across exec): the Ctrl-C tests need it delivered.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SECRET_ENV = (
    "HF_TOKEN",
    "SLSCALE_HF_TOKEN",
    "HF_USER_ID",
    "SLSCALE_HF_USER_ID",
    "HF_ENDPOINT",
    "SLSCALE_HF_ENDPOINT",
)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the built-in tiny model per test session (it is built once, then reused).

    `SLSCALE_TEST_TINY_CACHE=<dir>` reuses one across sessions (the build is keyed by its recipe).
    """
    shared = os.environ.get("SLSCALE_TEST_TINY_CACHE")
    return Path(shared) if shared else tmp_path_factory.mktemp("tiny-cache")


@pytest.fixture(scope="session")
def tiny_model(tiny_cache: Path) -> Path:
    """The built-in tiny model's directory (built on first use, a few minutes on 2 cores)."""
    from sl_scaling.tiny import ensure_tiny_model

    return ensure_tiny_model(tiny_cache)


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_cache: Path) -> Path:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLSCALE_WORKDIR", str(tmp_path))
    monkeypatch.setenv("SLSCALE_TINY_CACHE", str(tiny_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("SLSCALE_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStub]:
    """A local Hub stand-in (tests/hub_stub.py) reached through HF_ENDPOINT; Hub retries do not wait."""
    import huggingface_hub.constants
    from hub_stub import HubStub

    with HubStub() as stub:
        monkeypatch.setenv("HF_ENDPOINT", stub.endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("SLSCALE_HUB_RETRY_WAIT_S", "0")
        yield stub


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: run with the device tool on the lent H200")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
