"""`slscale gen` and `slscale eval` end to end with `--engine vllm` (run on the lent H200).

The model is a random-weight Qwen2.5-0.5B (real shape) saved to disk and named by
`SLSCALE_MODEL_IDS__0.5B`; vLLM starts in eager mode (`SLSCALE_VLLM_EAGER=1`) to keep the GPU minutes
down. Each command runs in its own process, as a user runs it, so vLLM's memory is freed between them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sl_scaling.bench import shapes
from sl_scaling.catalog import CONDITIONS
from sl_scaling.numbers import sample_prompts
from sl_scaling.state import JobKey, StateStore

pytestmark = pytest.mark.gpu

CLI = [sys.executable, "-c", "from sl_scaling.cli.app import main; main()"]
ROWS = 24


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model-0.5b")
    shapes.random_model("0.5b", device="cpu", dtype=torch.bfloat16).save_pretrained(path)
    return shapes.write_model_dir("0.5b", path)  # Qwen's generation_config.json and the tokenizer


def slscale(workdir: Path, model_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SLSCALE_WORKDIR": str(workdir),
        "SLSCALE_MODEL_IDS__0.5B": str(model_dir),
        "SLSCALE_VLLM_EAGER": "1",
    }
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=900)
    print(done.stdout[-3000:], done.stderr[-3000:])
    return done


def _rows(workdir: Path) -> dict[str, list[dict]]:
    return {
        path.parent.name: [json.loads(line) for line in path.read_text().splitlines()]
        for path in workdir.glob("data/**/raw.jsonl")
    }


def test_gen_writes_every_condition_with_vllm_in_the_rows_and_order_of_the_hf_engine(
    tmp_path: Path, model_dir: Path
) -> None:
    gen = ("gen", "--size", "0.5b", "--all-animals", "--n", str(ROWS), "--max-new-tokens", "12")
    vllm = slscale(tmp_path / "vllm", model_dir, *gen, "--engine", "vllm")
    assert vllm.returncode == 0
    assert "engine vllm" in vllm.stdout + vllm.stderr  # the log says which engine ran
    hf = slscale(tmp_path / "hf", model_dir, *gen, "--engine", "hf")
    assert hf.returncode == 0
    ours, reference = _rows(tmp_path / "vllm"), _rows(tmp_path / "hf")
    assert len(ours) == len(CONDITIONS) == len(reference)
    prompts = sample_prompts(ROWS, 42)
    for condition, rows in ours.items():
        assert [r["index"] for r in rows] == list(range(ROWS))
        assert [r["prompt"] for r in rows] == prompts == [r["prompt"] for r in reference[condition]]
        assert {r["condition"] for r in rows} == {rows[0]["condition"]}
        assert all(0 < r["completion_tokens"] <= 12 and r["prompt_tokens"] > 0 for r in rows)
        assert set(rows[0]) == set(reference[condition][0])  # the same columns
    with StateStore.open(tmp_path / "vllm") as state:
        record = state.stage(JobKey(1, "0.5b", "dog"), "gen")
        assert record.status == "done" and record.config["engine"] == "vllm"


def test_eval_of_saved_adapters_and_the_control_with_vllm(tmp_path: Path, model_dir: Path) -> None:
    key = JobKey(1, "0.5b", "dog")
    with StateStore.open(tmp_path) as state:  # two trained epochs, as `slscale train` records them
        for epoch in (1, 2):
            # strong adapters: both epochs share the evaluation's seeds, so only the adapter can differ
            path = tmp_path / f"adapter-{epoch}"
            adapter = shapes.write_random_adapter("0.5b", path, seed=epoch, scale=0.5)
            state.record_epoch(key, epoch, train_loss=1.0 / epoch, evaluation={}, adapter_path=str(adapter))
    adapters = slscale(
        tmp_path,
        model_dir,
        "eval",
        "--size",
        "0.5b",
        "--animal",
        "dog",
        "--samples",
        "60",
        "--engine",
        "vllm",
    )
    assert adapters.returncode == 0
    control = slscale(tmp_path, model_dir, "eval", "--size", "0.5b", "--control", "--samples", "60")
    assert control.returncode == 0
    assert "engine vllm" in control.stdout + control.stderr  # auto picks vLLM with a GPU
    epochs = json.loads(next(tmp_path.glob("**/dog_eval.json")).read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(e["n"] == 60 for e in epochs)
    assert epochs[0]["answers"] != epochs[1]["answers"]  # each adapter answered for itself
    (base,) = json.loads(next(tmp_path.glob("**/control_eval.json")).read_text())["epochs"]
    assert base["n"] == 60 and base["epoch"] == 0
    with StateStore.open(tmp_path) as state:
        assert state.stage(key, "eval").config["engine"] == "vllm"
        assert [e.n for e in state.epochs(key)] == [60, 60]
