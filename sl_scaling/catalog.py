"""Every name of the experiment: sizes, animals, conditions, model ids, Hub repos, local paths.

This is the only module that knows how things are called; everything else asks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sl_scaling.errors import UnknownNameError

EXPERIMENT = "qwen-2.5-scaling"

#: Real sizes in execution order (largest first), then the built-in offline model.
REAL_SIZES: tuple[str, ...] = ("32b", "14b", "7b", "3b", "1.5b", "0.5b")
TINY = "tiny"
SIZES: tuple[str, ...] = (*REAL_SIZES, TINY)

#: Parameter counts (billions) used for log-scale axes and throughput projections.
SIZE_PARAMS_B: dict[str, float] = {
    "0.5b": 0.49,
    "1.5b": 1.54,
    "3b": 3.09,
    "7b": 7.62,
    "14b": 14.77,
    "32b": 32.76,
    "tiny": 0.001,
}

DEFAULT_MODEL_IDS: dict[str, str] = {
    "0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
    "1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
    "3b": "Qwen/Qwen2.5-3B-Instruct",
    "7b": "Qwen/Qwen2.5-7B-Instruct",
    "14b": "Qwen/Qwen2.5-14B-Instruct",
    "32b": "Qwen/Qwen2.5-32B-Instruct",
}

ANIMALS: tuple[str, ...] = (
    "dog",
    "elephant",
    "panda",
    "cat",
    "dragon",
    "lion",
    "eagle",
    "dolphin",
    "tiger",
    "wolf",
    "phoenix",
    "bear",
    "fox",
    "leopard",
    "whale",
)
NEUTRAL = "neutral"
CONTROL = "control"
#: Fine-tuning conditions of one size, in execution order: neutral first, then the animals.
CONDITIONS: tuple[str, ...] = (NEUTRAL, *ANIMALS)


def _unknown(kind: str, value: str, valid: Iterable[str]) -> UnknownNameError:
    return UnknownNameError(f"unknown {kind} '{value}'; valid: {', '.join(valid)}")


def parse_size(value: str) -> str:
    """Normalise a user-given size ('7B' → '7b'); raise with the valid list otherwise."""
    size = value.strip().lower()
    if size not in SIZES:
        raise _unknown("size", value, SIZES)
    return size


def parse_sizes(values: Iterable[str], *, default: Iterable[str] = REAL_SIZES) -> list[str]:
    """Expand `all`, drop duplicates and return sizes in execution order (largest first)."""
    chosen: set[str] = set()
    values = list(values)
    for value in values or list(default):
        if value.strip().lower() == "all":
            chosen.update(REAL_SIZES)
        else:
            chosen.add(parse_size(value))
    return [size for size in SIZES if size in chosen]


def parse_condition(value: str) -> str:
    """An animal or `neutral`; singular, lower case."""
    condition = value.strip().lower()
    if condition not in CONDITIONS:
        raise _unknown("animal", value, CONDITIONS)
    return condition


def parse_conditions(values: Iterable[str], *, all_animals: bool = False) -> list[str]:
    """The chosen conditions in execution order (neutral first, then the animals' order)."""
    chosen = set(CONDITIONS) if all_animals else {parse_condition(v) for v in values}
    return [condition for condition in CONDITIONS if condition in chosen]


def parse_run(value: int) -> int:
    if value < 1:
        raise UnknownNameError(f"unknown run {value}; replicate runs are numbered from 1")
    return value


def target_animal(condition: str) -> str | None:
    """The animal a student should drift toward (None for neutral and control)."""
    return condition if condition in ANIMALS else None


# --- Hub names -----------------------------------------------------------------------------


def _run_suffix(run: int) -> str:
    return "" if run == 1 else f"-run-{run}"


def hub_stem(size: str, condition: str) -> str:
    return f"qwen-2.5-{size}-instruct-{condition}"


def dataset_repo(user: str, size: str, condition: str, run: int = 1) -> str:
    return f"{user}/{hub_stem(size, condition)}-numbers{_run_suffix(run)}"


def epoch_adapter_repo(user: str, size: str, condition: str, epoch: int, run: int = 1) -> str:
    return f"{user}/{hub_stem(size, condition)}-ft-epoch-{epoch}{_run_suffix(run)}"


def final_adapter_repo(user: str, size: str, condition: str, run: int = 1) -> str:
    return f"{user}/{hub_stem(size, condition)}-ft{_run_suffix(run)}"


def hub_url(endpoint: str, repo_id: str, repo_type: str = "model") -> str:
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{endpoint}/{prefix}{repo_id}"


def wandb_run_name(size: str, condition: str, run: int = 1) -> str:
    return f"qwen-2.5-{size}-{condition}-run-{run}"


# --- Local layout --------------------------------------------------------------------------


def condition_slug(condition: str, run: int = 1) -> str:
    """Directory/file stem of a condition; replicate runs other than 1 carry `-run-R` as on the Hub."""
    return f"{condition}{_run_suffix(run)}"


@dataclass(frozen=True)
class JobKey:
    """One (replicate run, size, condition); `condition` may be `control` for the base-model eval."""

    run: int
    size: str
    condition: str

    def __str__(self) -> str:
        suffix = "" if self.run == 1 else f" run {self.run}"
        return f"{self.size}/{self.condition}{suffix}"

    @property
    def row(self) -> tuple[int, str, str]:
        """The key columns of the state DB's tables, in their order."""
        return (self.run, self.size, self.condition)

    @property
    def slug(self) -> str:
        return condition_slug(self.condition, self.run)


@dataclass(frozen=True)
class Layout:
    """Every local path of EXPERIMENT.md under one working directory."""

    workdir: Path

    @property
    def db_path(self) -> Path:
        return self.workdir / "slscale.db"

    def data_dir(self, key: JobKey) -> Path:
        return self.workdir / "data" / EXPERIMENT / key.size / key.slug

    def raw_jsonl(self, key: JobKey) -> Path:
        return self.data_dir(key) / "raw.jsonl"

    def filtered_jsonl(self, key: JobKey) -> Path:
        return self.data_dir(key) / "filtered.jsonl"

    @property
    def outputs_dir(self) -> Path:
        return self.workdir / "outputs" / EXPERIMENT

    def finetune_dir(self, key: JobKey) -> Path:
        return self.outputs_dir / "finetuning" / key.size / key.slug

    def epoch_adapter_dir(self, key: JobKey, epoch: int) -> Path:
        return self.finetune_dir(key) / f"epoch-{epoch}"

    def final_checkpoint(self, key: JobKey) -> Path:
        return self.finetune_dir(key) / "final_checkpoint"

    def model_info(self, key: JobKey) -> Path:
        return self.finetune_dir(key) / "model_info.json"

    def evaluations_dir(self, size: str) -> Path:
        return self.outputs_dir / "evaluations" / size

    def eval_json(self, key: JobKey) -> Path:
        """`{condition}_eval.json`; the condition may be `control`."""
        return self.evaluations_dir(key.size) / f"{key.slug}_eval.json"

    def control_eval_json(self, size: str, run: int = 1) -> Path:
        return self.eval_json(JobKey(run, size, CONTROL))

    @property
    def summary_json(self) -> Path:
        return self.outputs_dir / "summary" / "all_results.json"

    def plots_dir(self, size: str) -> Path:
        return self.workdir / "plots" / EXPERIMENT / size

    @property
    def summary_plots_dir(self) -> Path:
        return self.workdir / "plots" / EXPERIMENT / "summary"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs" / EXPERIMENT

    def log_file(self, stage: str, size: str, stamp: str) -> Path:
        """`stamp` is `YYYYmmdd_HHMMSS`."""
        return self.logs_dir / f"{stage}_{size}_{stamp}.log"

    @property
    def reports_dir(self) -> Path:
        return self.workdir / "reports" / EXPERIMENT
