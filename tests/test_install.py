"""Installed as a user installs it: a wheel in a fresh venv runs the README's first command.

The venv gets only the wheel; the heavy dependencies (torch, transformers, ...) come from this test's
own environment through a path file, because installing them again would take minutes of CI for nothing
this test checks. The checkout is not importable from there, so whatever the program reads at run time
(the tiny model, the bench record) must come from the wheel's package data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel built from this checkout; returns its bin directory."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(wheels),
    ]
    source = root / "source"  # a clean copy: an in-tree build/ of an earlier build could leak stale modules
    shutil.copytree(ROOT / "sl_scaling", source / "sl_scaling", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([*build, str(source)], check=True, capture_output=True)
    (wheel,) = wheels.glob("sl_scaling-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / "bin"
    python = bin_dir / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "heavy_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--force-reinstall"]
    subprocess.run([*pip, "-q", str(wheel)], check=True, capture_output=True, env=_user_env(root))
    return bin_dir


def _user_env(tmp: Path) -> dict[str, str]:
    """A user's shell: no PYTHONPATH into the checkout, an empty tiny cache, offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SLSCALE_WORKDIR")}
    return {**env, "SLSCALE_TINY_CACHE": str(tmp / "tiny-cache"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def test_the_wheel_carries_what_the_program_reads(installed: Path, tmp_path: Path) -> None:
    code = "import sl_scaling, sl_scaling.tiny as t; print(sl_scaling.__file__); print(t.ensure_tiny_model())"
    found = subprocess.run(
        [installed / "python", "-c", code], env=_user_env(tmp_path), capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    where, model = found.stdout.split()
    assert Path(where).is_relative_to(installed.parent) and not Path(where).is_relative_to(ROOT)
    assert Path(model).is_relative_to(installed.parent)  # the shipped model, no build
    plan = subprocess.run(
        [installed / "slscale", "run", "--dry-run", "--json", "--size", "7b"],
        env=_user_env(tmp_path),
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    estimates = {step["stage"]: step["estimate_s"] for step in json.loads(plan.stdout)}
    assert estimates["gen"] and estimates["train"], estimates  # the bench record was found


@pytest.mark.slow
def test_the_readme_first_command_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """`slscale run --size tiny --no-push`, all 16 conditions, from the installed wheel."""
    result = subprocess.run(
        [installed / "slscale", "run", "--size", "tiny", "--no-push"],
        env={**_user_env(tmp_path), "WANDB_MODE": "disabled"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done" in result.stdout
    assert not (tmp_path / "tiny-cache").exists()  # nothing was built
    plots = tmp_path / "plots/qwen-2.5-scaling/tiny"
    assert (plots / "grouped_bar.png").stat().st_size > 0 and (plots / "stacked_preference.png").is_file()
    # The demo shows that training does something: every student's exact (sampling-free) preference
    # differs from the base model's and from every other student's, and their sampled answers differ.
    evaluations = tmp_path / "outputs/qwen-2.5-scaling/evaluations/tiny"
    last = {
        path.name.removesuffix("_eval.json"): json.loads(path.read_text())["epochs"][-1]
        for path in evaluations.glob("*_eval.json")
    }
    assert len(last) == 17  # 16 students and the control
    exact = {name: tuple(sorted(record["exact"]["probabilities"].items())) for name, record in last.items()}
    assert len(set(exact.values())) == 17
    answers = {
        tuple(a["label"] for a in record["answers"]) for name, record in last.items() if name != "control"
    }
    assert len(answers) > 1
