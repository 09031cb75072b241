"""Settings from the environment and `.env` (prefix `SLSCALE_`); secrets never leave as text."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sl_scaling.catalog import DEFAULT_MODEL_IDS, parse_size
from sl_scaling.errors import UsageError


class Settings(BaseSettings):
    """Everything configurable outside the command line. See `.env.example`."""

    model_config = SettingsConfigDict(
        env_prefix="SLSCALE_",
        env_file=".env",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    workdir: Path = Field(default=Path("."), description="where data/, outputs/, plots/, slscale.db live")
    model_ids: dict[str, str] = Field(
        default_factory=dict,
        description="per-size model id or local path, e.g. SLSCALE_MODEL_IDS__7B=/models/qwen7b",
    )
    tiny_cache: Path | None = Field(default=None, description="where the built-in tiny model is cached")
    vllm_eager: bool = Field(
        default=False,
        description="start vLLM without torch.compile and CUDA graphs: seconds instead of about a minute, "
        "but slower generation (small jobs, tests)",
    )
    mps: bool = Field(
        default=True,
        description="run the trainings that share a GPU under a CUDA MPS daemon of slscale's own, so that their "
        "kernels overlap instead of taking turns (where nvidia-cuda-mps-control exists and no MPS daemon runs)",
    )
    hf_user_id: str | None = Field(
        default=None, validation_alias=AliasChoices("SLSCALE_HF_USER_ID", "HF_USER_ID")
    )
    hf_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLSCALE_HF_TOKEN", "HF_TOKEN")
    )
    hf_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("SLSCALE_HF_ENDPOINT", "HF_ENDPOINT")
    )
    hub_private: bool = Field(default=True, description="create Hub repos as private")
    hub_attempts: int = Field(default=4, ge=1, description="tries per Hub upload before it stays pending")
    hub_retry_wait_s: float = Field(
        default=2.0, ge=0, description="first wait between Hub tries, doubled after each (capped at 30 s)"
    )
    wandb_project: str = "subliminal-scaling"
    wandb_entity: str | None = None
    wandb_mode: Literal["online", "offline", "disabled"] | None = Field(
        default=None, validation_alias=AliasChoices("SLSCALE_WANDB_MODE", "WANDB_MODE")
    )

    @field_validator("model_ids")
    @classmethod
    def _known_sizes(cls, value: dict[str, str]) -> dict[str, str]:
        return {parse_size(size): model for size, model in value.items()}

    @property
    def hub_endpoint(self) -> str:
        """The Hub's address (`HF_ENDPOINT`, a mirror or a local stand-in), for repo URLs too."""
        return (self.hf_endpoint or "https://huggingface.co").rstrip("/")

    def model_id(self, size: str) -> str:
        """The model a size loads: the override, else the Qwen 2.5 Instruct id (tiny: built locally)."""
        return self.model_ids.get(size) or DEFAULT_MODEL_IDS.get(size, size)


DOTENV = Path(".env")


def check_dotenv(path: Path = DOTENV) -> None:
    """Refuse a `.env` that cannot be read, is not UTF-8 or has a line that is no `NAME=value`
    (python-dotenv would only log a warning and drop the line, so a setting would silently be lost)."""
    if not path.exists():
        return
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path.resolve()}: {exc.strerror}; fix or remove it") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path.resolve()} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    from dotenv.parser import parse_stream

    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.string.strip()[:40]
            raise UsageError(
                f"{path.resolve()} line {binding.original.line} is not NAME=value: {line!r} "
                "(.env.example shows the format)"
            )


def load_settings(**overrides: object) -> Settings:
    """Settings, with a readable one-liner instead of pydantic's report when a value is invalid."""
    check_dotenv()
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise UsageError(
            f"invalid setting {where}: {first['msg']} (check the environment and .env)"
        ) from None
