"""`slscale push`: publish what is still pending (datasets, per-epoch adapters, final aliases)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from sl_scaling.catalog import parse_conditions, parse_run, parse_sizes
from sl_scaling.cli.options import AllAnimals, Animals, Sizes, Workdir
from sl_scaling.context import make_context
from sl_scaling.errors import HubError
from sl_scaling.progress import NullReporter, make_reporter

if TYPE_CHECKING:  # the Hub client and card templates load only when a command publishes
    from sl_scaling.publish import PlannedUpload

DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="List what would be uploaded and upload nothing; needs no token (repo owner from HF_USER_ID, "
        "shown as <HF_USER_ID> when unset).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the planned or finished uploads as JSON.")]
RunFilter = Annotated[
    int | None,
    typer.Option("--run", help="Only this replicate run (default: every run).", show_default=False),
]


def command(
    size: Sizes = [],  # noqa: B006 - typer needs a literal default; empty means every size
    animal: Animals = [],  # noqa: B006 - empty means every condition
    all_animals: AllAnimals = False,
    run: RunFilter = None,
    dry_run: DryRun = False,
    as_json: Json = False,
    workdir: Workdir = None,
) -> None:
    """Publish everything still pending to the Hugging Face Hub; safe to repeat.

    Datasets of finished `filter` runs, every recorded epoch adapter still on disk (deleted locally
    once its upload is confirmed, except the final epoch's) and the final `-ft` alias. Needs
    HF_USER_ID and HF_TOKEN (write access); they are checked before anything is uploaded.
    """
    ctx = make_context(workdir)
    sizes = set(parse_sizes(size, default=())) if size else None
    conditions = set(parse_conditions(animal, all_animals=all_animals)) if animal or all_animals else None
    runs = {parse_run(run)} if run is not None else None
    console = Console(highlight=False, soft_wrap=True)

    with ctx.state() as state, NullReporter() if as_json else make_reporter() as reporter:
        from sl_scaling.publish import Publisher

        publisher = Publisher(ctx.settings, ctx.layout, state, reporter=reporter)
        items = [
            item
            for item in publisher.plan()
            if (sizes is None or item.key.size in sizes)
            and (conditions is None or item.key.condition in conditions)
            and (runs is None or item.key.run in runs)
        ]
        if dry_run:
            _show_plan(console, items, as_json)
            return
        if not items:
            _say(console, as_json, [], "nothing to publish: every dataset and adapter is already on the Hub")
            return
        result = publisher.publish(items=items)

    uploaded = [{**item.to_json(), "url": info.url, "commit": info.commit} for item, info in result.uploaded]
    if uploaded or result.ok:
        deleted = len(result.deleted)
        message = f"published {len(uploaded)} repo(s); {deleted} local epoch adapter(s) deleted"
        _say(console, as_json, uploaded, message)
    if result.failed is not None:
        error = result.failed[1]
        still = 1 + len(result.not_attempted)
        raise HubError(f"{error}; {still} upload(s) still pending, run 'slscale push' again")


def _show_plan(console: Console, items: list[PlannedUpload], as_json: bool) -> None:
    if as_json:
        print(json.dumps([item.to_json() for item in items], indent=2))
        return
    if not items:
        console.print("nothing to publish")
    for item in items:
        console.print(f"{item.repo_type:7} {item.repo_id}  <- {item.local_path}  ({', '.join(item.files)})")


def _say(console: Console, as_json: bool, payload: list[dict[str, object]], message: str) -> None:
    if as_json:
        print(json.dumps(payload, indent=2))
    else:
        console.print(message)
