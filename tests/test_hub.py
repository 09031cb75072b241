"""`sl_scaling.hub` against the local Hub stand-in: uploads, downloads, retries and error classification."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_stub import DROP, HubStub

from sl_scaling.errors import HubAuthError, HubError
from sl_scaling.hub import Hub
from sl_scaling.settings import load_settings

TOKEN = "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi"
FILES = ["README.md", "adapter_config.json", "adapter_model.safetensors"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlibrary_name: peft\n---\n# card\n")
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 8)
    (folder / "optimizer.pt").write_bytes(b"never uploaded")
    return folder


def make_hub(retries: list[str] | None = None, **overrides: object) -> Hub:
    settings = load_settings(hf_user_id="alice", hf_token=TOKEN, **overrides)
    return Hub(settings, on_retry=None if retries is None else retries.append)


def upload(hub: Hub, folder: Path, repo_id: str = "alice/repo") -> str:
    return hub.upload_folder(
        folder, repo_id, "model", allow_patterns=FILES, commit_message="slscale: epoch 1"
    ).commit


def test_upload_creates_a_private_repo_and_commits_only_the_allowed_files(hub: HubStub, folder: Path) -> None:
    info = make_hub().upload_folder(
        folder, "alice/repo", "model", allow_patterns=FILES, commit_message="slscale: epoch 1 adapter"
    )

    repo = hub.repo("alice/repo")
    assert repo.private is True
    assert sorted(repo.files) == FILES
    assert repo.files["adapter_model.safetensors"] == (folder / "adapter_model.safetensors").read_bytes()
    assert [c.message for c in repo.commits] == ["slscale: epoch 1 adapter"]
    assert info.commit == repo.sha
    assert info.url == f"{hub.endpoint}/alice/repo"
    assert f"Bearer {TOKEN}" in hub.authorizations


def test_dataset_repos_and_public_setting(hub: HubStub, folder: Path) -> None:
    info = make_hub(hub_private=False).upload_folder(
        folder, "alice/data", "dataset", allow_patterns=["README.md"], commit_message="data"
    )

    assert hub.repo("alice/data", "dataset").private is False
    assert sorted(hub.repo("alice/data", "dataset").files) == ["README.md"]
    assert info.url == f"{hub.endpoint}/datasets/alice/data"


def test_uploading_again_to_an_existing_repo_works(hub: HubStub, folder: Path) -> None:
    client = make_hub()
    upload(client, folder)
    (folder / "adapter_config.json").write_text('{"r": 16}')
    second = upload(client, folder)

    assert hub.repo("alice/repo").sha == second
    assert hub.repo("alice/repo").text("adapter_config.json") == '{"r": 16}'


@pytest.mark.parametrize("fault", [500, 502, 429, DROP])
def test_transient_failures_are_retried(hub: HubStub, folder: Path, fault: str | int) -> None:
    retries: list[str] = []
    hub.fail_next(2, fault, matching="/api/repos/create")

    commit = upload(make_hub(retries), folder)

    assert commit == hub.repo("alice/repo").sha
    assert len(retries) == 2
    assert all("retrying" in line and TOKEN not in line for line in retries)


def test_a_failed_commit_is_retried_by_huggingface_hub_itself(hub: HubStub, folder: Path) -> None:
    hub.fail_next(1, 503, matching="/commit/")

    upload(make_hub(), folder)

    assert len(hub.repo("alice/repo").commits) == 1


def test_persistent_failures_give_up_after_the_configured_attempts(hub: HubStub, folder: Path) -> None:
    hub.fail_next(1000, 503)

    with pytest.raises(HubError) as caught:
        upload(make_hub(hub_attempts=3), folder)

    assert not isinstance(caught.value, HubAuthError)
    assert "HTTP 503" in str(caught.value)
    assert hub.requests.count(("POST", "/api/repos/create")) == 3
    assert hub.commits() == []


def test_unreachable_hub_is_a_transient_error(folder: Path) -> None:
    with HubStub() as stub:
        endpoint = stub.endpoint  # a port that is closed once the stub stops
    client = make_hub(hf_endpoint=endpoint, hub_attempts=2, hub_retry_wait_s=0)

    with pytest.raises(HubError, match="connection failed"):
        upload(client, folder)


@pytest.mark.parametrize(("status", "path"), [(401, "/api/repos/create"), (403, "/commit/")])
def test_auth_errors_are_not_retried_and_say_how_to_fix(
    hub: HubStub, folder: Path, status: int, path: str
) -> None:
    hub.fail_next(1, status, matching=path)
    retries: list[str] = []

    with pytest.raises(HubAuthError) as caught:
        upload(make_hub(retries), folder)

    message = str(caught.value)
    assert str(status) in message
    assert "HF_TOKEN" in message and "HF_USER_ID" in message and "write access" in message
    assert TOKEN not in message
    assert retries == []


def test_download_and_list_files(hub: HubStub, folder: Path, tmp_path: Path) -> None:
    client = make_hub()
    upload(client, folder)

    assert client.list_files("alice/repo", "model") == FILES
    dest = client.download("alice/repo", "model", ["adapter_model.safetensors"], tmp_path / "back")

    assert (dest / "adapter_model.safetensors").read_bytes() == (
        folder / "adapter_model.safetensors"
    ).read_bytes()


def test_offline_mode_is_reported_not_retried(
    hub: HubStub, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        upload(make_hub(), folder)
    assert hub.requests == []


def test_scrub_removes_the_token_and_token_shaped_text() -> None:
    client = make_hub()

    assert client.scrub(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer ***"
    token_shaped = "hf_" + "abcdefghijklmnopqrstuvwxyz012345"  # split so no token-shaped literal is committed
    assert client.scrub(token_shaped) == "hf_***"
