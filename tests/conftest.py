"""Every test runs in its own working directory, offline, with no credentials leaking in."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    """One cache for the built-in tiny model per test session (it is built once, then reused)."""
    return tmp_path_factory.mktemp("tiny-cache")


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
