"""What is still to be published, and publishing it: datasets, per-epoch adapters, final aliases.

Pending work is derived from the DB (filter done → dataset; recorded epochs whose adapter is still
local → epoch repos; the epoch saved in `final_checkpoint/` → also the `-ft` alias) minus uploads
already `done`. So `slscale push` and the training callback share one idempotent code path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import constants

from sl_scaling import catalog
from sl_scaling.cards import DATASET_DATA_FILE, AdapterFacts, DatasetFacts, dataset_card, model_card
from sl_scaling.catalog import DEFAULT_MODEL_IDS, Layout
from sl_scaling.errors import HubAuthError, HubError, MissingPrerequisiteError
from sl_scaling.hub import Hub, UploadInfo
from sl_scaling.model_info import write_model_info
from sl_scaling.progress import NullReporter, Reporter
from sl_scaling.settings import Settings
from sl_scaling.state import DONE, EpochRecord, JobKey, StateStore

#: What an adapter repo gets besides its README.md card: the adapter (required) and, when training saved
#: it, the tokenizer (so the repo is usable on its own). Nothing else in the folder leaves the machine.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)
CARD = "README.md"
#: The repo owner shown by `--dry-run` when HF_USER_ID is not set.
USER_PLACEHOLDER = "<HF_USER_ID>"
DATASET, EPOCH, FINAL = "dataset", "epoch", "final"


def check_publishing(settings: Settings) -> None:
    """Credentials and online mode, checked in an instant: commands that will publish call it before they
    load anything heavy (train imports the training stack first otherwise: ~30 s before this one line)."""
    missing = [
        name
        for name, value in (("HF_USER_ID", settings.hf_user_id), ("HF_TOKEN", settings.hf_token))
        if not value
    ]
    if missing:
        raise MissingPrerequisiteError(
            f"{' and '.join(missing)} not set: publishing needs HF_USER_ID (your Hub user or organisation) "
            "and HF_TOKEN (a token with write access), in the environment or .env "
            "(train and run keep everything local with --no-push)"
        )
    if constants.is_offline_mode():
        raise MissingPrerequisiteError("HF_HUB_OFFLINE is set: unset it to publish to the Hub")


@dataclass(frozen=True)
class PlannedUpload:
    """One repo to publish: where from, and which files (paths inside the repo) it will hold."""

    repo_id: str
    repo_type: str  # "dataset" | "model"
    kind: str  # dataset | epoch | final
    key: JobKey
    epoch: int | None
    local_path: Path
    files: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "repo_type": self.repo_type,
            "kind": self.kind,
            "run": self.key.run,
            "size": self.key.size,
            "condition": self.key.condition,
            "epoch": self.epoch,
            "local_path": str(self.local_path),
            "files": list(self.files),
        }


@dataclass
class PublishResult:
    uploaded: list[tuple[PlannedUpload, UploadInfo]] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)
    #: The upload that failed after its retries (it stays pending with its error), if any.
    failed: tuple[PlannedUpload, str] | None = None
    #: Uploads not attempted because an earlier one failed (still pending).
    not_attempted: list[PlannedUpload] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed is None


class Publisher:
    """Publishes pending work of one working directory to `settings.hf_user_id`'s namespace."""

    def __init__(
        self,
        settings: Settings,
        layout: Layout,
        state: StateStore,
        *,
        reporter: Reporter | None = None,
        hub: Hub | None = None,
    ) -> None:
        self.settings = settings
        self.layout = layout
        self.state = state
        self.reporter = reporter or NullReporter()
        self.hub = hub or Hub(settings, on_retry=self.reporter.event)
        self.user = settings.hf_user_id or USER_PLACEHOLDER

    # --- what is pending ---------------------------------------------------------------------

    def plan(self, key: JobKey | None = None) -> list[PlannedUpload]:
        """Everything not yet uploaded, per job: the dataset, then epochs in order, then the final alias."""
        done = {upload.repo_id for upload in self.state.uploads(DONE)}
        items = [*self._datasets(key), *self._adapters(key)]
        order = {DATASET: 0, EPOCH: 1, FINAL: 2}
        items.sort(
            key=lambda item: (
                item.key.run,
                item.key.size,
                item.key.condition,
                order[item.kind],
                item.epoch or 0,
            )
        )
        return [item for item in items if item.repo_id not in done]

    def _datasets(self, key: JobKey | None) -> Iterator[PlannedUpload]:
        for record in self.state.stages():
            if record.stage != "filter" or record.status != DONE or (key and record.key != key):
                continue
            k = record.key
            path = self.layout.filtered_jsonl(k)
            if path.is_file():
                repo = catalog.dataset_repo(self.user, k.size, k.condition, k.run)
                yield PlannedUpload(repo, "dataset", DATASET, k, None, path, (CARD, DATASET_DATA_FILE))

    def _adapters(self, key: JobKey | None) -> Iterator[PlannedUpload]:
        for record in self.state.all_epochs():
            k = record.key
            if (key and k != key) or record.local_deleted or not record.adapter_path:
                continue
            folder = Path(record.adapter_path)
            if not all((folder / name).is_file() for name in ADAPTER_FILES):
                continue
            files = (*ADAPTER_FILES, *(name for name in TOKENIZER_FILES if (folder / name).is_file()))
            repo = catalog.epoch_adapter_repo(self.user, k.size, k.condition, record.epoch, k.run)
            yield PlannedUpload(repo, "model", EPOCH, k, record.epoch, folder, (CARD, *files))
            if self._is_final(record):
                repo = catalog.final_adapter_repo(self.user, k.size, k.condition, k.run)
                yield PlannedUpload(repo, "model", FINAL, k, record.epoch, folder, (CARD, *files))

    def _is_final(self, record: EpochRecord) -> bool:
        k = record.key
        final = self.layout.final_checkpoint(k)
        return Path(record.adapter_path or "").resolve() == final.resolve()

    # --- publishing --------------------------------------------------------------------------

    def publish(
        self, key: JobKey | None = None, items: Sequence[PlannedUpload] | None = None
    ) -> PublishResult:
        """Upload `items` (default: everything pending for `key`); stop at the first failed upload.

        A transient failure (after retries) is recorded on the upload, which stays pending, and
        returned in the result; an authentication failure is recorded and raised (HubAuthError).
        """
        check_publishing(self.settings)
        pending = list(self.plan(key) if items is None else items)
        result = PublishResult()
        for index, item in enumerate(pending):
            self.state.plan_upload(
                item.repo_id, item.repo_type, item.kind, item.key, item.epoch, str(item.local_path)
            )
            try:
                info = self._upload(item)
            except HubError as exc:
                self.state.fail_upload(item.repo_id, str(exc))
                if isinstance(exc, HubAuthError):
                    raise
                result.failed = (item, str(exc))
                result.not_attempted = pending[index + 1 :]
                return result
            self._record(item, info, result)
        return result

    def _upload(self, item: PlannedUpload) -> UploadInfo:
        self.reporter.event(f"uploading {item.repo_id} ({len(item.files)} files)")
        with self._staged(item) as folder:
            return self.hub.upload_folder(
                folder,
                item.repo_id,
                item.repo_type,
                allow_patterns=item.files,
                commit_message=self._commit_message(item),
            )

    @staticmethod
    def _commit_message(item: PlannedUpload) -> str:
        k = item.key
        run = "" if k.run == 1 else f", run {k.run}"
        if item.kind == DATASET:
            return f"slscale: filtered numbers of the {k.condition} teacher (qwen-2.5 {k.size}{run})"
        which = f"final adapter (epoch {item.epoch})" if item.kind == FINAL else f"epoch {item.epoch} adapter"
        return f"slscale: {which} of the {k.condition} student (qwen-2.5 {k.size}{run})"

    @contextmanager
    def _staged(self, item: PlannedUpload) -> Iterator[Path]:
        """A temporary folder with the card and links to the local files, laid out as in the repo."""
        with tempfile.TemporaryDirectory(prefix="slscale-push-") as tmp:
            folder = Path(tmp)
            (folder / CARD).write_text(self._card(item), encoding="utf-8")
            if item.kind == DATASET:
                sources = {DATASET_DATA_FILE: item.local_path}
            else:
                sources = {name: item.local_path / name for name in item.files if name != CARD}
            for name, source in sources.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(source.resolve(), folder / name)
            yield folder

    def _card(self, item: PlannedUpload) -> str:
        k = item.key
        if item.kind == DATASET:
            gen = self.state.stage(k, "gen")
            filtered = self.state.stage(k, "filter")
            generation = gen.config if gen else {}
            facts = DatasetFacts(
                repo_id=item.repo_id,
                size=k.size,
                condition=k.condition,
                run=k.run,
                teacher_model=generation.get("model") or self.settings.model_id(k.size),
                generation=generation,
                filtering=filtered.counts if filtered else {},
            )
            return str(dataset_card(facts))
        record = next(e for e in self.state.epochs(k) if e.epoch == item.epoch)
        train = self.state.stage(k, "train")
        facts = AdapterFacts(
            repo_id=item.repo_id,
            dataset_repo=catalog.dataset_repo(self.user, k.size, k.condition, k.run),
            size=k.size,
            condition=k.condition,
            run=k.run,
            epoch=record.epoch,
            final=item.kind == FINAL,
            base_model=self._base_model(k.size),
            train_config=train.config if train else {},
            train_loss=record.train_loss,
            evaluation=record.eval,
        )
        return str(model_card(facts))

    def _base_model(self, size: str) -> str | None:
        """A Hub model id for the card's `base_model` (a local-path override names its Qwen original)."""
        model = self.settings.model_id(size)
        if model.count("/") == 1 and not Path(model).exists():
            return model
        return DEFAULT_MODEL_IDS.get(size)

    def _record(self, item: PlannedUpload, info: UploadInfo, result: PublishResult) -> None:
        """Record a confirmed upload; only then delete a non-final local epoch adapter."""
        self.state.finish_upload(item.repo_id, info.commit)
        result.uploaded.append((item, info))
        k = item.key
        if item.kind == EPOCH and item.local_path.resolve() != self.layout.final_checkpoint(k).resolve():
            shutil.rmtree(item.local_path, ignore_errors=True)
            self.state.mark_local_deleted(k, item.epoch or 0)
            result.deleted.append(item.local_path)
        if item.kind in (EPOCH, FINAL):
            write_model_info(self.layout, self.state, k, self.settings.hub_endpoint)

    # --- getting an adapter back ---------------------------------------------------------------

    def fetch_adapter(self, key: JobKey, epoch: int, dest: Path) -> Path:
        """Download an uploaded epoch adapter (its local copy was deleted after upload) into `dest`."""
        check_publishing(self.settings)
        repo = catalog.epoch_adapter_repo(self.user, key.size, key.condition, epoch, key.run)
        upload = self.state.upload(repo)
        if upload is None or upload.status != DONE:
            raise MissingPrerequisiteError(
                f"epoch {epoch} of {key} was never uploaded to {repo}; train it again or evaluate a local adapter"
            )
        wanted = {*ADAPTER_FILES, *TOKENIZER_FILES}
        files = [name for name in self.hub.list_files(repo, "model") if name in wanted]
        dest.mkdir(parents=True, exist_ok=True)
        return self.hub.download(repo, "model", files, dest)
