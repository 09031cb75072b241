"""Settings: the SLSCALE_ prefix, plain HF_* names, .env, secrets that never show, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sl_scaling.errors import UsageError
from sl_scaling.settings import Settings, load_settings

TOKEN = "hf_secretvalue1234567890"


def test_defaults_point_at_qwen_and_the_workdir_env(workdir: Path) -> None:
    settings = load_settings()
    assert settings.workdir == workdir  # SLSCALE_WORKDIR, set by the autouse fixture
    assert settings.model_id("7b") == "Qwen/Qwen2.5-7B-Instruct"
    assert settings.hf_token is None
    assert settings.hf_user_id is None
    assert settings.hub_private is True


def test_slscale_prefix_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLSCALE_WANDB_PROJECT", "proj")
    monkeypatch.setenv("SLSCALE_HUB_PRIVATE", "false")
    monkeypatch.setenv("WANDB_PROJECT", "ignored-without-prefix")
    settings = load_settings()
    assert settings.wandb_project == "proj"
    assert settings.hub_private is False


def test_plain_hf_names_are_read_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_USER_ID", "someone")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    settings = load_settings()
    assert settings.hf_token is not None
    assert settings.hf_token.get_secret_value() == TOKEN
    assert settings.hf_user_id == "someone"
    assert settings.hf_endpoint == "http://127.0.0.1:9"


def test_the_prefixed_token_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLSCALE_HF_TOKEN", TOKEN)
    assert load_settings().hf_token.get_secret_value() == TOKEN


def test_the_token_never_appears_in_repr_str_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    settings = load_settings()
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump())):
        assert TOKEN not in text


def test_per_size_model_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLSCALE_MODEL_IDS__7B", "/models/qwen7b")
    settings = load_settings()
    assert settings.model_id("7b") == "/models/qwen7b"
    assert settings.model_id("0.5b") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_dotenv_in_the_current_directory_is_read(workdir: Path) -> None:
    (workdir / ".env").write_text("SLSCALE_WANDB_ENTITY=team\nHF_USER_ID=from-dotenv\nUNRELATED=1\n")
    settings = Settings()
    assert settings.wandb_entity == "team"
    assert settings.hf_user_id == "from-dotenv"


def test_overrides_win_and_none_means_unset(tmp_path: Path) -> None:
    assert load_settings(workdir=tmp_path / "elsewhere").workdir == tmp_path / "elsewhere"
    assert load_settings(workdir=None).workdir == load_settings().workdir


@pytest.mark.parametrize(
    ("name", "value", "mentions"),
    [
        ("SLSCALE_HUB_PRIVATE", "perhaps", "hub_private"),
        ("SLSCALE_WANDB_MODE", "loud", "wandb_mode"),
        ("SLSCALE_MODEL_IDS__8B", "/x", "8b"),
        ("SLSCALE_HUB_ATTEMPTS", "0", "hub_attempts"),
    ],
)
def test_an_invalid_value_is_one_usage_error_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, mentions: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(UsageError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert "\n" not in message
    assert mentions in message.lower()
    assert excinfo.value.exit_code == 2
