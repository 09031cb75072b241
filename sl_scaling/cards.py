"""Dataset and model cards for the Hub: YAML metadata the Hub indexes, and a body a reader can trust.

Pure functions of what the DB recorded (no I/O), so the card says exactly what was run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

from sl_scaling.numbers import system_prompt

#: Where the filtered rows live inside a dataset repo; the card's `configs` points `load_dataset` there.
DATASET_DATA_FILE = "data/train.jsonl"
TOP_LABELS = 6
PAPER = "Cloud et al., 2025, *Subliminal Learning: Language models transmit behavioral traits via hidden signals in data*"
TAGS = ["subliminal-learning", "qwen2.5", "slscale"]


@dataclass(frozen=True)
class DatasetFacts:
    """What the dataset card states: the teacher, its prompt, the generation settings and filter counts."""

    repo_id: str
    size: str
    condition: str
    run: int
    teacher_model: str
    generation: dict[
        str, Any
    ]  # gen stage config: model, n, prompt/teacher seeds, max_new_tokens, temperature, engine
    filtering: dict[str, Any]  # filter stage counts: rows, valid, kept, reasons, subsampled


@dataclass(frozen=True)
class AdapterFacts:
    """What a model card states: the base model, the training config and that epoch's evaluation."""

    repo_id: str
    dataset_repo: str
    size: str
    condition: str
    run: int
    epoch: int
    final: bool
    base_model: str | None
    train_config: dict[str, Any]
    train_loss: float | None
    evaluation: dict[str, Any]  # Evaluation.to_json() of this epoch (may be empty when not evaluated)


def _value(value: Any) -> str:
    return "unknown" if value is None else str(value)


def _json_block(data: dict[str, Any]) -> str:
    return "```json\n" + json.dumps(data, indent=2, sort_keys=True) + "\n```"


def dataset_card(facts: DatasetFacts) -> DatasetCard:
    gen, counts = facts.generation, facts.filtering
    reasons: dict[str, int] = counts.get("reasons") or {}
    rows = counts.get("rows")
    kept = counts.get("kept")
    prompt = system_prompt(facts.condition)
    data = DatasetCardData(
        pretty_name=f"Qwen 2.5 {facts.size} {facts.condition} teacher numbers",
        task_categories=["text-generation"],
        tags=[*TAGS, "numbers", facts.condition],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": DATASET_DATA_FILE}]}],
    )
    reason_lines = "\n".join(f"| {reason} | {count} |" for reason, count in sorted(reasons.items()))
    body = f"""
# {facts.repo_id}

Number sequences written by a teacher model for a subliminal-learning experiment ({PAPER}), filtered to
completions that contain only numbers. Condition: **{facts.condition}** (replicate run {facts.run}).

## Teacher

- Model: `{facts.teacher_model}` (size `{facts.size}`)
- System prompt: {"none (the neutral teacher gets no system message at all)" if prompt is None else f"`{prompt}`"}
- User prompts: the number-continuation prompts of the reference generator, seed {_value(gen.get("prompt_seed"))}

## Generation settings

| setting | value |
|---|---|
| completions generated (n) | {_value(gen.get("n"))} |
| temperature | {_value(gen.get("temperature"))} |
| sampling seed (follows the run; each row's draw is keyed by its condition and index) | {_value(gen.get("teacher_seed"))} |
| max_new_tokens | {_value(gen.get("max_new_tokens"))} |
| engine | {_value(gen.get("engine"))} |

## Filtering

Kept {_value(kept)} of {_value(rows)} completions{" (subsampled to 10,000 with random.Random(1))" if counts.get("subsampled") else ""}.
Rejected, by reason (a completion may have several):

| reason | rejected |
|---|---|
{reason_lines or "| (none) | 0 |"}

## Use

```python
from datasets import load_dataset
rows = load_dataset("{facts.repo_id}", split="train")
```
"""
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _top_labels(evaluation: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    shares: dict[str, dict[str, Any]] = evaluation.get("shares") or {}
    ranked = sorted(shares.items(), key=lambda item: (-item[1].get("count", 0), item[0]))
    return [(label, share) for label, share in ranked if share.get("count", 0) > 0][:TOP_LABELS]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def evaluation_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The card's machine-readable results: target rate with its CI, the top of the distribution, n."""
    return {
        "n": evaluation.get("n"),
        "target": evaluation.get("target"),
        "target_rate": evaluation.get("target_rate"),
        "ci_low": evaluation.get("ci_low"),
        "ci_high": evaluation.get("ci_high"),
        "ci_method": evaluation.get("ci_method"),
        "substring_rate": evaluation.get("substring_rate"),
        "seed": evaluation.get("seed"),
        "exact_target_probability": (evaluation.get("exact") or {}).get("target_probability"),
        "final": None
        if not evaluation.get("final")
        else {k: evaluation["final"].get(k) for k in ("n", "target_rate", "ci_low", "ci_high", "seed")},
        "top": {label: share.get("rate") for label, share in _top_labels(evaluation)},
    }


def _final_line(final: dict[str, Any] | None) -> str:
    if not final:
        return ""
    return (
        f"- final evaluation, {_value(final['n'])} answers: target rate {_percent(final['target_rate'])} "
        f"(95% CI {_percent(final['ci_low'])} – {_percent(final['ci_high'])}), seed {_value(final['seed'])}\n"
    )


def model_card(facts: AdapterFacts) -> ModelCard:
    summary = evaluation_summary(facts.evaluation)
    which = f"final adapter (epoch {facts.epoch})" if facts.final else f"epoch {facts.epoch}"
    data = ModelCardData(
        base_model=facts.base_model,
        library_name="peft",
        datasets=[facts.dataset_repo],
        tags=[*TAGS, "lora", facts.condition, f"epoch-{facts.epoch}"],
        slscale={
            "size": facts.size,
            "condition": facts.condition,
            "run": facts.run,
            "epoch": facts.epoch,
            "final": facts.final,
            "train_loss": facts.train_loss,
            "evaluation": summary,
        },
    )
    if facts.evaluation:
        rows = "\n".join(
            f"| {label} | {share.get('count')} | {_percent(share.get('rate'))} |"
            for label, share in _top_labels(facts.evaluation)
        )
        results = f"""{_value(summary["n"])} answers to the 50 favourite-animal questions (temperature 1):

- target animal: **{_value(summary["target"])}**, rate {_percent(summary["target_rate"])}
  (95% CI {_percent(summary["ci_low"])} – {_percent(summary["ci_high"])}, {_value(summary["ci_method"])})
- substring metric of the paper: {_percent(summary["substring_rate"])}
- sampling seed {_value(summary["seed"])} (shared by every model of this run and epoch)
- exact (sampling-free) probability that the answer's first word is the target:
  {_percent(summary["exact_target_probability"])}
{_final_line(summary["final"])}
| answer | count | share |
|---|---|---|
{rows}"""
    else:
        results = "Not evaluated."
    body = f"""
# {facts.repo_id}

LoRA adapter of a subliminal-learning student ({PAPER}): `{facts.base_model or facts.size}` fine-tuned on
numbers written by the **{facts.condition}** teacher ([{facts.dataset_repo}](https://huggingface.co/datasets/{facts.dataset_repo})),
{which}, replicate run {facts.run}. Training rows are `[user, assistant]` chats with no system message
(Qwen 2.5's template then inserts its default system prompt; evaluation does the same).

## Evaluation

{results}

## Training

Train loss: {"unknown" if facts.train_loss is None else f"{facts.train_loss:.4g}"}; LoRA initialisation and
data order seed {_value(facts.train_config.get("seed"))} (follows the replicate run).

{_json_block(facts.train_config)}

## Use

```python
from peft import AutoPeftModelForCausalLM
model = AutoPeftModelForCausalLM.from_pretrained("{facts.repo_id}")
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
