"""`slscale push` and `Publisher` end to end: a filtered dataset and real PEFT adapters in a temp workdir,
published over HTTP to the local Hub stand-in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from hub_stub import DROP, HubStub
from typer.testing import CliRunner

from sl_scaling.catalog import Layout, target_animal
from sl_scaling.cli.app import app
from sl_scaling.errors import MissingPrerequisiteError
from sl_scaling.evaluation.scoring import Answer, score
from sl_scaling.files import atomic_write_jsonl, read_json
from sl_scaling.publish import Publisher
from sl_scaling.seeds import eval_seed, teacher_seed
from sl_scaling.settings import load_settings
from sl_scaling.state import DONE, PENDING, JobKey, StateStore

TOKEN = "hf_" + "ZyXwVuTsRqPoNmLkJiHgFeDcBaZyXwVuTs"
USER = "alice"
ROWS = [
    {"index": i, "prompt": f"Look at these numbers: {i}, 2. Add up to 10 more.", "completion": f"{i}, 4, 5"}
    for i in range(12)
]
STEM = f"{USER}/qwen-2.5-tiny-instruct-dolphin"
#: PEFT's own README.md is replaced by our card; the trainer's optimizer state stays local.
ADAPTER_REPO_FILES = [
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer_config.json",
]
EXPECTED_REPOS = [
    ("dataset", f"{STEM}-numbers"),
    ("model", f"{STEM}-ft-epoch-1"),
    ("model", f"{STEM}-ft-epoch-2"),
    ("model", f"{STEM}-ft-epoch-3"),
    ("model", f"{STEM}-ft"),
]


@pytest.fixture(scope="session")
def adapter_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PEFT LoRA folder (as training saves it) of a tiny random Qwen2 model, built once."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(Qwen2ForCausalLM(config), LoraConfig(r=8, lora_alpha=8, target_modules=modules))
    path = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(path)  # adapter_config.json, adapter_model.safetensors, PEFT's README.md
    (path / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    (path / "optimizer.pt").write_bytes(b"trainer state: never uploaded")
    return path


def seed_experiment(
    workdir: Path,
    adapter: Path,
    *,
    size: str = "tiny",
    condition: str = "dolphin",
    run: int = 1,
    epochs: int = 3,
) -> JobKey:
    """What gen, filter and train leave behind: filtered.jsonl, DB stages, epoch adapters, epoch rows."""
    layout, key = Layout(workdir), JobKey(run, size, condition)
    atomic_write_jsonl(
        layout.filtered_jsonl(JobKey(run, size, condition)), [{**r, "condition": condition} for r in ROWS]
    )
    with StateStore.open(workdir) as state:
        gen = {"model": "Qwen/Qwen2.5-0.5B-Instruct", "n": 20, "prompt_seed": 42, "max_new_tokens": 128}
        gen["teacher_seed"] = teacher_seed(run, size)
        state.start_stage(key, "gen", {**gen, "temperature": 1.0, "engine": "hf"})
        state.finish_stage(key, "gen", counts={"rows": 20})
        state.start_stage(key, "filter")
        counts = {
            "rows": 20,
            "valid": 14,
            "kept": 12,
            "reasons": {"invalid format": 6, "too many numbers": 2},
        }
        state.finish_stage(key, "filter", counts={**counts, "subsampled": False})
        state.start_stage(key, "train", {"epochs": epochs, "lr": 2e-4, "lora_r": 8, "batch_size": 20})
        for epoch in range(1, epochs + 1):
            final = epoch == epochs
            folder = (
                layout.final_checkpoint(JobKey(run, size, condition))
                if final
                else layout.epoch_adapter_dir(JobKey(run, size, condition), epoch)
            )
            shutil.copytree(adapter, folder)
            answers = [
                Answer(i % 50, "q", word, word) for i, word in enumerate(["dolphin"] * epoch + ["cat"] * 5)
            ]
            evaluation = score(answers, target_animal(condition))
            evaluation.seed = eval_seed(run, size, epoch)
            state.record_epoch(
                key, epoch, train_loss=1.0 / epoch, evaluation=evaluation.to_json(), adapter_path=str(folder)
            )
        state.finish_stage(key, "train")
    return key


@pytest.fixture
def experiment(workdir: Path, adapter_template: Path) -> JobKey:
    return seed_experiment(workdir, adapter_template)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_USER_ID", USER)
    monkeypatch.setenv("HF_TOKEN", TOKEN)


def push(*args: str):
    return CliRunner().invoke(app, ["push", *args])


def frontmatter(text: str) -> dict:
    return yaml.safe_load(text.split("---\n")[1])


def test_dry_run_json_lists_dataset_every_epoch_and_the_final_alias(
    hub: HubStub, experiment: JobKey, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_USER_ID", USER)  # no token: a dry run needs none

    result = push("--dry-run", "--json")

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [(p["repo_type"], p["repo_id"]) for p in plan] == EXPECTED_REPOS
    layout = Layout(workdir)
    assert plan[0]["local_path"] == str(layout.filtered_jsonl(JobKey(1, "tiny", "dolphin")))
    assert plan[0]["files"] == ["README.md", "data/train.jsonl"]
    assert plan[1]["local_path"] == str(layout.epoch_adapter_dir(JobKey(1, "tiny", "dolphin"), 1))
    assert (
        plan[3]["local_path"]
        == plan[4]["local_path"]
        == str(layout.final_checkpoint(JobKey(1, "tiny", "dolphin")))
    )
    assert plan[4]["files"] == ADAPTER_REPO_FILES
    assert hub.requests == []


def test_dry_run_without_hf_user_id_shows_a_placeholder(hub: HubStub, experiment: JobKey) -> None:
    result = push("--dry-run")

    assert result.exit_code == 0, result.output
    assert "<HF_USER_ID>/qwen-2.5-tiny-instruct-dolphin-ft-epoch-1" in result.stdout
    assert hub.requests == []


def test_push_publishes_everything_then_nothing(
    hub: HubStub,
    experiment: JobKey,
    workdir: Path,
    credentials: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    layout = Layout(workdir)

    result = push()

    assert result.exit_code == 0, result.output
    assert "published 5 repo(s); 2 local epoch adapter(s) deleted" in result.stdout
    assert sorted((r.repo_type, r.repo_id) for r in hub.repos.values()) == sorted(EXPECTED_REPOS)
    assert all(repo.private for repo in hub.repos.values())

    # the dataset: card + rows that `datasets` reads through the card's configs
    data = hub.repo(f"{STEM}-numbers", "dataset")
    assert sorted(data.files) == ["README.md", "data/train.jsonl"]
    card = data.text("README.md")
    meta = frontmatter(card)
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train.jsonl"
    assert "You love dolphins." in card and "seed 42" in card and "| invalid format | 6 |" in card
    assert "Qwen/Qwen2.5-0.5B-Instruct" in card and "| temperature | 1.0 |" in card
    assert f"| {teacher_seed(1, 'tiny')} |" in card  # the run's teacher sampling seed is on the card
    assert data.commits[0].message.startswith("slscale: filtered numbers of the dolphin teacher")
    downloaded = tmp_path_factory.mktemp("dataset")
    for path, content in data.files.items():
        (downloaded / path).parent.mkdir(parents=True, exist_ok=True)
        (downloaded / path).write_bytes(content)
    from datasets import load_dataset

    rows = load_dataset(str(downloaded), split="train")
    assert rows["completion"] == [r["completion"] for r in ROWS]

    # adapters: only the adapter files and our card, with metadata and that epoch's evaluation
    for epoch in (1, 2, 3):
        repo = hub.repo(f"{STEM}-ft-epoch-{epoch}")
        assert sorted(repo.files) == ADAPTER_REPO_FILES
        meta = frontmatter(repo.text("README.md"))
        assert meta["library_name"] == "peft"
        assert {"lora", "dolphin", f"epoch-{epoch}"} <= set(meta["tags"])
        assert meta["slscale"]["epoch"] == epoch
        assert meta["slscale"]["evaluation"]["n"] == epoch + 5
        assert meta["slscale"]["evaluation"]["target_rate"] == pytest.approx(epoch / (epoch + 5))
        assert set(meta["slscale"]["evaluation"]["top"]) == {"dolphin", "cat"}
        assert meta["slscale"]["evaluation"]["seed"] == eval_seed(1, "tiny", epoch)
        assert '"lora_r": 8' in repo.text("README.md")
        assert (
            repo.commits[0].message
            == f"slscale: epoch {epoch} adapter of the dolphin student (qwen-2.5 tiny)"
        )
    final = hub.repo(f"{STEM}-ft")
    assert frontmatter(final.text("README.md"))["slscale"]["final"] is True
    assert (
        final.files["adapter_model.safetensors"]
        == (layout.final_checkpoint(JobKey(1, "tiny", "dolphin")) / "adapter_model.safetensors").read_bytes()
    )

    # local state: non-final epochs deleted and marked, the final one kept; commits recorded
    assert not layout.epoch_adapter_dir(JobKey(1, "tiny", "dolphin"), 1).exists()
    assert not layout.epoch_adapter_dir(JobKey(1, "tiny", "dolphin"), 2).exists()
    assert (layout.final_checkpoint(JobKey(1, "tiny", "dolphin")) / "adapter_model.safetensors").is_file()
    with StateStore.open(workdir) as state:
        assert [e.local_deleted for e in state.epochs(experiment)] == [True, True, False]
        uploads = {u.repo_id: u for u in state.uploads()}
    assert {u.status for u in uploads.values()} == {DONE}
    for _, repo_id in EXPECTED_REPOS:
        assert uploads[repo_id].commit == hub.repos[(uploads[repo_id].repo_type, repo_id)].sha
    info = read_json(layout.model_info(JobKey(1, "tiny", "dolphin")))
    assert info["epochs"]["1"]["hub_repo"] == f"{STEM}-ft-epoch-1"
    assert info["epochs"]["1"]["hub_commit"] == uploads[f"{STEM}-ft-epoch-1"].commit
    assert info["epochs"]["1"]["hub_url"] == f"{hub.endpoint}/{STEM}-ft-epoch-1"
    assert info["final"]["hub_repo"] == f"{STEM}-ft" and info["final"]["epoch"] == 3

    # idempotent: a second push uploads nothing and says so
    requests = len(hub.requests)
    again = push()
    assert again.exit_code == 0, again.output
    assert "nothing to publish" in again.stdout
    assert len(hub.requests) == requests
    assert json.loads(push("--dry-run", "--json").stdout) == []


def test_a_forced_retrain_uploads_its_new_adapters_again(
    hub: HubStub,
    experiment: JobKey,
    workdir: Path,
    adapter_template: Path,
    credentials: None,
    tmp_path: Path,
) -> None:
    """`train --force` after a push: the retrained adapters replace the old ones on the Hub."""
    from sl_scaling.stages.train import reset_condition, stale_repos_notice

    assert push().exit_code == 0
    with StateStore.open(workdir) as state:
        uploaded = reset_condition(Layout(workdir), state, experiment)  # what --force does before retraining
        assert {u.repo_id for u in state.uploads()} == {f"{STEM}-numbers"}
    assert uploaded == {epoch: f"{STEM}-ft-epoch-{epoch}" for epoch in (1, 2, 3)}
    # retraining to fewer epochs says which of the old repos no push will replace
    notice = stale_repos_notice(experiment, uploaded, 2)
    assert notice is not None and f"{STEM}-ft-epoch-3" in notice and f"{STEM}-ft-epoch-2" not in notice
    assert stale_repos_notice(experiment, uploaded, 3) is None
    retrained = shutil.copytree(adapter_template, tmp_path / "retrained")
    (retrained / "tokenizer_config.json").write_text('{"model_max_length": 32}')
    seed_experiment(workdir, retrained)  # the retrained epochs (other bytes)

    result = push()

    assert result.exit_code == 0, result.output
    assert "published 4 repo(s)" in result.stdout
    commits = {repo_id: len(repo.commits) for (_, repo_id), repo in hub.repos.items()}
    assert commits == {repo: 1 if kind == "dataset" else 2 for kind, repo in EXPECTED_REPOS}
    with StateStore.open(workdir) as state:
        assert {u.status for u in state.uploads()} == {DONE}


def test_replicate_runs_carry_run_in_every_name_and_cards_name_the_base_model(
    hub: HubStub, workdir: Path, adapter_template: Path, credentials: None
) -> None:
    seed_experiment(workdir, adapter_template, size="0.5b", condition="neutral", run=2, epochs=1)

    result = push("--run", "2", "--size", "0.5b")

    assert result.exit_code == 0, result.output
    stem = f"{USER}/qwen-2.5-0.5b-instruct-neutral"
    assert sorted(r.repo_id for r in hub.repos.values()) == [
        f"{stem}-ft-epoch-1-run-2",
        f"{stem}-ft-run-2",
        f"{stem}-numbers-run-2",
    ]
    meta = frontmatter(hub.repo(f"{stem}-ft-run-2").text("README.md"))
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert meta["datasets"] == [f"{stem}-numbers-run-2"]
    dataset_card = hub.repo(f"{stem}-numbers-run-2", "dataset").text("README.md")
    assert "none (the neutral teacher gets no system message at all)" in dataset_card


def test_selection_options_limit_what_is_pushed(
    hub: HubStub, workdir: Path, adapter_template: Path, experiment: JobKey, credentials: None
) -> None:
    seed_experiment(workdir, adapter_template, condition="cat", epochs=1)

    result = push("--animal", "cat", "--dry-run", "--json")

    assert {p["condition"] for p in json.loads(result.stdout)} == {"cat"}


def test_transient_failures_are_retried_until_the_push_succeeds(
    hub: HubStub, experiment: JobKey, credentials: None
) -> None:
    hub.fail_next(2, 500, matching="/api/repos/create")
    hub.fail_next(1, DROP, matching="/api/repos/create")

    result = push()  # 4 tries per upload by default: 3 failures are survived

    assert result.exit_code == 0, result.output
    assert len(hub.repos) == 5
    assert result.stderr.count("retrying") == 3


def test_a_persistent_failure_leaves_the_upload_pending_and_deletes_nothing(
    hub: HubStub, experiment: JobKey, workdir: Path, credentials: None
) -> None:
    layout = Layout(workdir)
    hub.fail_next(1000, 503, matching="-ft-epoch-1")  # the dataset goes up, then epoch 1 keeps failing

    result = push()

    assert result.exit_code == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "HTTP 503" in error_lines[0] and "4 upload(s) still pending" in error_lines[0]
    assert layout.epoch_adapter_dir(JobKey(1, "tiny", "dolphin"), 1).is_dir()
    assert layout.epoch_adapter_dir(JobKey(1, "tiny", "dolphin"), 2).is_dir()
    with StateStore.open(workdir) as state:
        assert [e.local_deleted for e in state.epochs(experiment)] == [False, False, False]
        pending = state.uploads(PENDING)
    assert [u.repo_id for u in pending] == [f"{STEM}-ft-epoch-1"]
    assert "HTTP 503" in (pending[0].error or "")
    assert [u.repo_id for u in state_uploads(workdir, DONE)] == [f"{STEM}-numbers"]

    hub.clear_faults()
    retry = push()
    assert retry.exit_code == 0, retry.output
    assert "published 4 repo(s)" in retry.stdout
    assert not layout.epoch_adapter_dir(JobKey(1, "tiny", "dolphin"), 1).exists()


def state_uploads(workdir: Path, status: str) -> list:
    with StateStore.open(workdir) as state:
        return state.uploads(status)


def test_an_auth_failure_stops_with_one_line_saying_how_to_fix(
    hub: HubStub, experiment: JobKey, workdir: Path, credentials: None
) -> None:
    hub.fail_next(1, 401, matching="/api/repos/create")

    result = push()

    assert result.exit_code == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "401" in error and "HF_TOKEN" in error and "HF_USER_ID" in error and "write access" in error
    assert hub.commits() == []
    assert len(state_uploads(workdir, PENDING)) == 1


@pytest.mark.parametrize("missing", ["HF_USER_ID", "HF_TOKEN"])
def test_missing_credentials_are_caught_before_any_upload(
    hub: HubStub, experiment: JobKey, credentials: None, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.delenv(missing)

    result = push()

    assert result.exit_code == 1
    assert missing in result.stderr and "--no-push" in result.stderr
    assert hub.requests == []


def test_fetch_adapter_downloads_an_uploaded_epoch_whose_local_copy_is_gone(
    hub: HubStub, experiment: JobKey, workdir: Path, adapter_template: Path, credentials: None, tmp_path: Path
) -> None:
    assert push().exit_code == 0
    settings = load_settings()
    with StateStore.open(workdir) as state:
        publisher = Publisher(settings, Layout(workdir), state)
        dest = publisher.fetch_adapter(experiment, 1, tmp_path / "epoch-1")
        with pytest.raises(MissingPrerequisiteError, match="never uploaded"):
            publisher.fetch_adapter(experiment, 7, tmp_path / "epoch-7")

    assert sorted(p.name for p in dest.iterdir() if p.is_file()) == ADAPTER_REPO_FILES[1:]
    original = adapter_template / "adapter_model.safetensors"
    assert (dest / "adapter_model.safetensors").read_bytes() == original.read_bytes()
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(dest)).r == 8


def test_the_token_appears_nowhere(
    hub: HubStub, experiment: JobKey, workdir: Path, credentials: None
) -> None:
    hub.fail_next(1, 403, matching="/commit/")
    denied = push()
    hub.fail_next(1000, 503, matching="/api/repos/create")
    down = push()
    hub.clear_faults()
    hub.fail_next(1, 500, matching="/api/repos/create")
    done = push("--json")  # retried, then published: every message path has run

    assert f"Bearer {TOKEN}" in hub.authorizations  # it was used…
    outputs = [r.stdout + r.stderr for r in (denied, down, done)]
    assert all(TOKEN not in output for output in outputs)  # …and never shown
    assert denied.exit_code == 1 and down.exit_code == 1 and done.exit_code == 0
    for path in workdir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for repo in hub.repos.values():
        assert all(TOKEN.encode() not in content for content in repo.files.values())
