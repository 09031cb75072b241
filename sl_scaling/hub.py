"""The only module that talks to the Hugging Face Hub: create a repo, upload a folder, download files.

`huggingface_hub` already retries its preupload and commit requests (`http_backoff`); `create_repo`
and a retry budget that ran out inside it are not retried there, so each whole operation runs under
one more bounded, configurable backoff here (`settings.hub_attempts`, `settings.hub_retry_wait_s`).
Errors leave as `HubError` (transient ones, after the last try) or `HubAuthError` (at once), and
their text never contains the token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from huggingface_hub.utils import logging as hf_logging

from sl_scaling.catalog import hub_url
from sl_scaling.errors import HubAuthError, HubError
from sl_scaling.settings import Settings

T = TypeVar("T")

MAX_WAIT_S = 30.0
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{20,}")

AUTH_FIX = (
    "set HF_TOKEN to a token with write access (https://huggingface.co/settings/tokens) and HF_USER_ID "
    "to the user or organisation that owns the repos (the token must be allowed to write there)"
)


@dataclass(frozen=True)
class UploadInfo:
    """A confirmed upload: where it went and which commit holds it."""

    repo_id: str
    repo_type: str
    url: str
    commit: str


class Hub:
    """An `HfApi` bound to the configured endpoint and token, with error classification and retries."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self._token = settings.hf_token.get_secret_value() if settings.hf_token else None
        self.endpoint = settings.hub_endpoint
        self.private = settings.hub_private
        self.attempts = settings.hub_attempts
        self.first_wait_s = settings.hub_retry_wait_s
        self.api = HfApi(endpoint=self.endpoint, token=self._token)
        self._on_retry = on_retry

    def upload_folder(
        self,
        folder: Path,
        repo_id: str,
        repo_type: str,
        *,
        allow_patterns: Sequence[str],
        commit_message: str,
    ) -> UploadInfo:
        """Create the repo if needed (with the configured privacy), then commit the allowed files."""

        def attempt() -> UploadInfo:
            self.api.create_repo(repo_id, repo_type=repo_type, private=self.private, exist_ok=True)
            info = self.api.upload_folder(
                folder_path=folder,
                repo_id=repo_id,
                repo_type=repo_type,
                allow_patterns=list(allow_patterns),
                commit_message=commit_message,
            )
            return UploadInfo(repo_id, repo_type, hub_url(self.endpoint, repo_id, repo_type), info.oid)

        return self._with_retries(f"upload to {repo_id}", attempt)

    def download(self, repo_id: str, repo_type: str, filenames: Sequence[str], dest: Path) -> Path:
        """Download `filenames` of a repo into `dest` (a plain folder, not the HF cache)."""

        def attempt() -> Path:
            for filename in filenames:
                hf_hub_download(
                    repo_id,
                    filename,
                    repo_type=repo_type,
                    local_dir=dest,
                    endpoint=self.endpoint,
                    token=self._token,
                )
            return dest

        return self._with_retries(f"download from {repo_id}", attempt)

    def list_files(self, repo_id: str, repo_type: str) -> list[str]:
        return self._with_retries(
            f"listing {repo_id}", lambda: self.api.list_repo_files(repo_id, repo_type=repo_type)
        )

    # --- errors and retries ----------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """Remove the token (and anything shaped like one) from text that may be shown or stored."""
        if self._token:
            text = text.replace(self._token, "***")
        return _TOKEN_SHAPE.sub("hf_***", text)

    def _with_retries(self, what: str, operation: Callable[[], T]) -> T:
        wait = self.first_wait_s
        for attempt in range(1, self.attempts + 1):
            try:
                with _quiet_hub():
                    return operation()
            except Exception as exc:
                error = self._classify(what, exc)
                if not _is_transient(exc) or attempt == self.attempts:
                    raise error from None
                if self._on_retry:
                    self._on_retry(f"{error}; retrying in {wait:g}s ({attempt}/{self.attempts})")
                time.sleep(wait)
                wait = min(MAX_WAIT_S, wait * 2)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _classify(self, what: str, exc: Exception) -> HubError:
        if isinstance(exc, OfflineModeIsEnabled):
            return HubError(f"{what}: HF_HUB_OFFLINE is set; unset it to publish to the Hub")
        status = _status(exc)
        if status in AUTH_STATUS:
            reason = "not authorised (401)" if status == 401 else "permission denied (403)"
            return HubAuthError(
                f"{what} refused: {reason}; {AUTH_FIX}, or change HF_USER_ID if the repo belongs to someone else"
            )
        if status is not None:
            detail = _server_message(exc)
            return HubError(self.scrub(f"{what} failed: HTTP {status}{detail} from {self.endpoint}"))
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
        if isinstance(exc, httpx.TransportError):
            return HubError(self.scrub(f"{what} failed: {kind} ({type(exc).__name__}) at {self.endpoint}"))
        return HubError(self.scrub(f"{what} failed: {type(exc).__name__}: {_first_line(str(exc))}"))


#: How long the preflight waits for the Hub to say a model exists (one request, no retries).
MODEL_CHECK_TIMEOUT_S = 5.0


def model_unavailable(settings: Settings, model_id: str) -> str | None:
    """Why a Hub model id cannot be loaded here (None: it is in the local cache or on the Hub).

    Asked once, in seconds, before any work: loading it later would retry for minutes and then fail.
    """
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return None
    if constants.HF_HUB_OFFLINE:
        return "it is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
    hub = Hub(settings)
    try:
        with _quiet_hub():
            hub.api.model_info(model_id, timeout=MODEL_CHECK_TIMEOUT_S)
    except HfHubHTTPError as exc:
        status = _status(exc)
        if status == 404:
            return f"the Hub at {hub.endpoint} has no model {model_id} (or it is private to another account)"
        if status in AUTH_STATUS:
            return f"the Hub at {hub.endpoint} refused access to it (HTTP {status}; gated or private?)"
        return f"the Hub at {hub.endpoint} answered HTTP {status}"
    except (httpx.HTTPError, OSError, OfflineModeIsEnabled) as exc:
        return (
            f"it is not in the Hugging Face cache and {hub.endpoint} cannot be reached ({type(exc).__name__})"
        )
    return None


def _status(exc: Exception) -> int | None:
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return exc.response.status_code
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return None


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, OfflineModeIsEnabled):
        return False
    status = _status(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    return isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError)


def _server_message(exc: Exception) -> str:
    message = getattr(exc, "server_message", None)
    return f" ({_first_line(message)})" if message else ""


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """Silence huggingface_hub's own retry warnings and terminal progress display while we work.

    We report retries ourselves (one line each) and our live dashboard owns the terminal.
    """
    logger = hf_logging.get_logger("huggingface_hub")
    level = logger.level
    bars_were_disabled = are_progress_bars_disabled()
    logger.setLevel(hf_logging.ERROR)
    disable_progress_bars()
    try:
        yield
    finally:
        logger.setLevel(level)
        if not bars_were_disabled:
            enable_progress_bars()
