"""The charts: their Vega-Lite specs (`to_dict()`), real PNG/HTML files, and what is reported missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from synthetic_grid import write_eval_file, write_grid
from typer.testing import CliRunner

from sl_scaling.catalog import ANIMALS, Layout
from sl_scaling.charts.palette import ANIMAL_COLOURS, MODEL_KIND_COLOURS, OTHERS, OTHERS_COLOUR
from sl_scaling.charts.plots import (
    grouped_bar_chart,
    plot_size,
    plot_summary,
    scaling_chart,
    stacked_data,
    stacked_preference_chart,
)
from sl_scaling.cli.app import app
from sl_scaling.results import load_eval_files, tidy_table
from sl_scaling.summary import at_epoch, lift_rows, mean_lifts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def _rows(layout: Layout, size: str | None = None, epoch: int | None = None) -> list[dict[str, Any]]:
    files = load_eval_files(layout, sizes=[size] if size else [])
    return at_epoch(tidy_table(files), epoch)[0]


def _data(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for dataset in spec.get("datasets", {}).values() for row in dataset] or spec["data"]["values"]


def _assert_real_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 1000 and height > 600  # scale factor 2: crisp text


def test_grouped_bar_spec(workdir: Path) -> None:
    layout = write_grid(workdir, sizes=("7b",), epochs=2)
    spec = grouped_bar_chart(_rows(layout), "7b").to_dict()
    bars, errors = spec["layer"]
    assert bars["mark"]["type"] == "bar"
    enc = bars["encoding"]
    assert enc["x"]["field"] == "animal" and enc["x"]["sort"] == list(ANIMALS)
    assert enc["xOffset"] == {"field": "model", "sort": ["Control", "Neutral", "Animal"], "type": "nominal"}
    assert enc["y"]["field"] == "share" and enc["y"]["axis"]["format"] == "%" and "(%)" in enc["y"]["title"]
    assert enc["color"]["scale"] == {
        "domain": ["Control", "Neutral", "Animal"],
        "range": [MODEL_KIND_COLOURS[k] for k in ("Control", "Neutral", "Animal")],
    }
    assert errors["mark"]["type"] == "rule"
    assert errors["encoding"]["y"]["field"] == "ci_low" and errors["encoding"]["y2"]["field"] == "ci_high"
    assert errors["encoding"]["xOffset"]["field"] == "model"  # error bars sit on their own bar
    assert "7B" in spec["title"]["text"]
    data = _data(spec)
    assert len(data) == 45  # 15 animals x (control, neutral, that animal's student)
    dog = {row["model"]: row for row in data if row["animal"] == "dog"}
    assert dog["Animal"]["share"] > dog["Neutral"]["share"] and dog["Animal"]["epoch"] == 2
    assert all(row["ci_low"] - 1e-12 <= row["share"] <= row["ci_high"] for row in data)


def test_stacked_spec_colours_six_most_frequent_animals_and_others(workdir: Path) -> None:
    layout = write_grid(workdir, sizes=("7b",), conditions=("neutral", "dog", "whale"), epochs=1)
    rows = _rows(layout)
    data, domain, models = stacked_data(rows)
    assert models == ["Control", "Neutral-FT", "dog-FT", "whale-FT"]
    # by total share over the four models (dog and dragon tie at 64 answers: the animal order decides)
    assert domain == ["panda", "dog", "dragon", "lion", "cat", "eagle", OTHERS]
    for model in models:
        assert sum(row["share"] for row in data if row["model"] == model) == pytest.approx(1.0)
    whale_others = next(r for r in data if r["model"] == "whale-FT" and r["answer"] == OTHERS)
    assert whale_others["share"] > 0.1  # whale and owl answers fall into "others"

    spec = stacked_preference_chart(rows, "7b").to_dict()
    enc = spec["encoding"]
    assert spec["mark"]["type"] == "bar"
    assert enc["x"]["sort"] == models and enc["y"]["stack"] == "zero" and enc["y"]["axis"]["format"] == "%"
    assert enc["color"]["scale"]["domain"] == domain
    assert enc["color"]["scale"]["range"] == [ANIMAL_COLOURS[a] for a in domain[:-1]] + [OTHERS_COLOUR]
    assert enc["order"]["field"] == "stack_order"


def test_scaling_overview_spec_log_axis_points_and_mean(workdir: Path) -> None:
    layout = write_grid(workdir, sizes=("32b", "7b", "0.5b"), conditions=("neutral", "dog", "cat"), epochs=2)
    lifts = lift_rows(_rows(layout))
    spec = scaling_chart(lifts, mean_lifts(lifts), which="each student's last evaluated epoch").to_dict()
    zero, points, mean, exact = spec["layer"]
    assert zero["mark"]["type"] == "rule"
    assert points["mark"]["type"] == "circle" and mean["mark"]["type"] == "line"
    assert exact["mark"]["strokeDash"] and exact["encoding"]["y"]["field"] == "mean_exact_lift"
    x = points["encoding"]["x"]
    assert x["field"] == "params_b" and x["scale"]["type"] == "log"
    assert x["axis"]["values"] == [32.76, 7.62, 0.49] and "'7B'" in x["axis"]["labelExpr"]
    assert points["encoding"]["y"]["field"] == "lift" and points["encoding"]["y"]["axis"]["format"] == "%"
    assert points["encoding"]["color"]["scale"]["range"] == [ANIMAL_COLOURS[a] for a in ANIMALS]
    assert mean["encoding"]["y"]["field"] == "mean_lift"
    lifts = points["data"]["values"] if "values" in points.get("data", {}) else None
    datasets = spec.get("datasets", {})
    point_rows = lifts or next(rows for rows in datasets.values() if rows and "lift" in rows[0])
    assert len(point_rows) == 6  # 3 sizes x 2 animals
    assert all(row["lift"] == pytest.approx(row["animal_ft"] - row["neutral_ft"]) for row in point_rows)


def test_plot_size_writes_real_png_and_html(workdir: Path) -> None:
    layout = write_grid(workdir, sizes=("7b",), epochs=2)
    result = plot_size(layout, "7b")
    directory = layout.plots_dir("7b")
    assert result.paths == [
        directory / "grouped_bar.png",
        directory / "grouped_bar.html",
        directory / "stacked_preference.png",
        directory / "stacked_preference.html",
    ]
    assert result.missing == []
    for png in (directory / "grouped_bar.png", directory / "stacked_preference.png"):
        _assert_real_png(png)
        html = png.with_suffix(".html").read_text()
        assert "<html" in html and "vegaEmbed" in html
    assert not list(directory.glob(".*"))  # no temp files left behind


def test_missing_pieces_are_plotted_around_and_listed(workdir: Path) -> None:
    layout = Layout(workdir)
    write_eval_file(layout, "3b", "dog", {1: {"dog": 30, "panda": 70}})  # no control, no neutral yet
    result = plot_size(layout, "3b")
    assert len(result.paths) == 4
    assert result.missing[0] == "3b: no control evaluation yet (slscale eval --size 3b --control)"
    assert result.missing[1].startswith(
        "3b/neutral: not evaluated yet (slscale train --size 3b --animal neutral"
    )
    assert result.missing[2].startswith("3b: no animal student evaluated yet for elephant, panda")
    assert "missing:" in str(result)

    nothing = plot_size(layout, "14b")
    assert nothing.paths == [] and nothing.missing == ["14b: nothing evaluated yet, no charts drawn"]

    summary = plot_summary(layout)
    assert summary.paths == []
    assert summary.missing[0].startswith("3b: no lift yet")


def test_asked_epoch_missing_for_a_condition_is_reported(workdir: Path) -> None:
    layout = write_grid(workdir, sizes=("7b",), conditions=("neutral", "dog"), epochs=2)
    write_eval_file(layout, "7b", "cat", {1: {"cat": 40, "panda": 60}})
    result = plot_size(layout, "7b", epoch=2)
    assert "7b/cat: epoch 2 not evaluated (latest 1)" in result.missing
    spec = grouped_bar_chart(_rows(layout, "7b", epoch=2), "7b", epoch=2).to_dict()
    assert not any(row["animal"] == "cat" and row["model"] == "Animal" for row in _data(spec))
    assert "epoch 2" in " ".join(spec["title"]["subtitle"])


def test_summary_chart_file(workdir: Path) -> None:
    layout = write_grid(workdir, sizes=("7b", "0.5b"), conditions=("neutral", "dog", "eagle"), epochs=1)
    result = plot_summary(layout)
    assert result.paths == [
        layout.summary_plots_dir / "scaling_overview.png",
        layout.summary_plots_dir / "scaling_overview.html",
    ]
    _assert_real_png(result.paths[0])


def test_plot_command(workdir: Path) -> None:
    layout = write_grid(workdir, sizes=("tiny",), conditions=("neutral", "dog", "cat"), epochs=2)
    result = runner.invoke(app, ["plot", "--size", "tiny"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "grouped_bar.png" in result.output and "stacked_preference.png" in result.output
    assert "missing tiny: no animal student evaluated yet for elephant" in result.output
    assert (layout.plots_dir("tiny") / "grouped_bar.png").exists()
    assert layout.summary_json.exists()

    result = runner.invoke(app, ["plot", "--summary"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (layout.summary_plots_dir / "scaling_overview.png").exists()

    result = runner.invoke(app, ["plot", "--size", "7b"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "missing 7b: nothing evaluated yet" in result.output and "error: no charts drawn" in result.output
