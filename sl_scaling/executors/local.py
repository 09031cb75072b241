"""The in-process executor: jobs one after another in plan order, on this machine's GPUs."""

from __future__ import annotations

from collections.abc import Sequence

from sl_scaling.context import Context
from sl_scaling.executors.base import Job, Ledger, Outcome, Work, note_retry, record_outcome
from sl_scaling.progress import Reporter


class LocalExecutor:
    name = "local"

    def __init__(self, max_retries: int = 0) -> None:
        self.max_retries = max_retries

    def gpus_per_node(self) -> int:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def gpu_memory_gib(self) -> float | None:
        import torch

        if not torch.cuda.is_available():
            return None
        return min(
            torch.cuda.get_device_properties(i).total_memory / 2**30 for i in range(torch.cuda.device_count())
        )

    def check(self, ctx: Context) -> list[str]:
        return []

    def execute(self, ctx: Context, jobs: Sequence[Job], work: Work, reporter: Reporter) -> list[Outcome]:
        ledger = Ledger(jobs, self.max_retries)
        while ready := ledger.ready():
            for outcome in ledger.new_skips():
                record_outcome(ctx, outcome, reporter)
            job = ready[0]
            while True:
                attempt = ledger.start(job)
                try:
                    work(ctx, job, reporter)
                except Exception as exc:
                    if ledger.failed(job, exc, retry=not job.on_driver):
                        note_retry(ctx, job, attempt, self.max_retries, exc, reporter)
                        continue
                    record_outcome(ctx, ledger.outcomes[job.id], reporter)
                else:
                    ledger.succeeded(job)
                break
        for outcome in ledger.new_skips():
            record_outcome(ctx, outcome, reporter)
        return ledger.results()

    def close(self) -> None:
        pass
