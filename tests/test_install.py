"""Installed as a user installs it: a wheel in a fresh venv runs the README's first command.

The venv gets the wheel and exactly what `pip install` of it would bring: the wheel's own requirements
(no extras) and theirs, found in this test's environment and linked into one site directory that a path
file adds (installing torch and transformers again would take minutes of CI for nothing this test checks).
Neither the checkout nor the test environment's other packages (dev and cluster extras) are importable
from there, so an undeclared import fails here, and whatever the program reads at run time (the tiny
model, the bench record) must come from the wheel's package data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
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
    (Path(site) / "heavy_dependencies.pth").write_text(f"{runtime_site(wheel, root / 'runtime')}\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--force-reinstall"]
    subprocess.run([*pip, "-q", str(wheel)], check=True, capture_output=True, env=_user_env(root))
    return bin_dir


def runtime_site(wheel: Path, site: Path) -> Path:
    """Links to the installed copies of the wheel's requirement closure (markers evaluated, extras only
    where a requirement asks for them): the packages a user's `pip install` of the wheel would get."""
    from email.parser import Parser
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = Parser().parsestr(archive.read(name).decode()).get_all("Requires-Dist") or []
    pending = [(Requirement(r), frozenset({""})) for r in requires]
    seen: set[tuple[str, frozenset[str]]] = set()
    site.mkdir(parents=True)
    while pending:
        requirement, extras = pending.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in extras):
            continue
        wanted = frozenset({"", *requirement.extras})
        key = (canonicalize_name(requirement.name), wanted)
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(requirement.name)  # missing: the test environment lacks a dependency
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            link = site / top
            if not link.exists():
                link.symlink_to(Path(str(dist.locate_file(top))))
        pending += [(Requirement(r), wanted) for r in dist.requires or []]
    return site


def _user_env(tmp: Path) -> dict[str, str]:
    """A user's shell: no PYTHONPATH into the checkout, an empty tiny cache, offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SLSCALE_WORKDIR")}
    return {**env, "SLSCALE_TINY_CACHE": str(tmp / "tiny-cache"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def test_the_wheel_carries_what_the_program_reads(installed: Path, tmp_path: Path) -> None:
    stages = "sl_scaling.stages.generate, sl_scaling.stages.train, sl_scaling.stages.evaluate, sl_scaling.charts.plots"
    code = f"import {stages}, sl_scaling, sl_scaling.tiny as t; print(sl_scaling.__file__); print(t.ensure_tiny_model())"
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
