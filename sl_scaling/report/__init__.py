"""`slscale report`: the scaling-law analysis of the evaluation files, as report.md, report.html, report.json.

data (files → records) → analysis (numbers, via the numpy-only stats) → charts + render (files).
"""

from __future__ import annotations

from sl_scaling.catalog import REAL_SIZES, SIZES, TINY, Layout
from sl_scaling.errors import MissingPrerequisiteError
from sl_scaling.report.analysis import Analysis, Options, analyse
from sl_scaling.report.data import load_grid
from sl_scaling.report.render import ReportFiles, write_report
from sl_scaling.results import find_eval_files


def default_sizes(layout: Layout) -> list[str]:
    """The six real sizes if any of them has evaluations (the rest show up as missing), plus tiny if it has."""
    with_data = {size for size in SIZES if find_eval_files(layout, size)}
    return [s for s in SIZES if s in with_data or (s in REAL_SIZES and with_data - {TINY})] or list(
        REAL_SIZES
    )


def build_report(
    layout: Layout, sizes: list[str], runs: list[int] | None, options: Options
) -> tuple[ReportFiles, Analysis]:
    """Analyse the evaluation files of `sizes` (all runs found, or `runs`) and write the report."""
    grid = load_grid(layout, sizes, runs)
    if not grid.records:
        raise MissingPrerequisiteError(
            f"no evaluation data under {layout.outputs_dir / 'evaluations'} for {', '.join(sizes)}"
            + ("" if runs is None else f" (runs {', '.join(map(str, runs))})")
            + "; evaluate first with 'slscale eval' or 'slscale train'"
        )
    analysis = analyse(grid, sizes, runs, options)
    return write_report(analysis, grid, layout), analysis


__all__ = ["Options", "build_report", "default_sizes"]
