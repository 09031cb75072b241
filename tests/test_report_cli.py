"""`slscale report` through the real CLI on synthetic evaluation files written in the real format."""

from __future__ import annotations

import json

import pytest
from synthetic_report import write_grid
from typer.testing import CliRunner

from sl_scaling.catalog import JobKey, Layout
from sl_scaling.cli.app import app
from sl_scaling.cli.report import parse_runs
from sl_scaling.errors import UsageError

runner = CliRunner()


def _report(layout: Layout) -> tuple[str, str, dict]:
    out = layout.reports_dir
    return (
        (out / "report.md").read_text(),
        (out / "report.html").read_text(),
        json.loads((out / "report.json").read_text()),
    )


def test_report_renders_md_html_json_and_lists_what_is_missing(workdir):
    layout = Layout(workdir)
    # A full grid with a planted effect, and a tiny run with a few conditions, two epochs and no control.
    write_grid(layout, {"7b": 0.25}, epochs=2, seed=1)
    write_grid(layout, {"tiny": 0.1}, conditions=["neutral", "dog", "cat"], epochs=2, control=False, seed=2)

    result = runner.invoke(app, ["report", "--size", "7b", "--size", "tiny"])

    assert result.exit_code == 0, result.output
    assert "7b  epoch 2" in result.output and "effect" in result.output
    md, html, data = _report(layout)
    charts = sorted(p.name for p in (layout.reports_dir / "charts").iterdir())
    assert charts == [
        "7b_confusion.png",
        "7b_lift.png",
        "epoch_curves.png",
        "scaling.png",
        "tiny_confusion.png",
        "tiny_lift.png",
    ]
    # Markdown points at the PNGs; HTML carries them inline and loads nothing from the network.
    assert "![Confusion matrix, 7B](charts/7b_confusion.png)" in md
    assert html.count("data:image/png;base64,") == len(charts)
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "<table>" in html
    # The method and its unit are stated.
    assert "Unit: the student" in md and "unit: the question" in md
    # Every number is in the JSON.
    sizes = {s["size"]: s for s in data["sizes"]}
    assert set(sizes) == {"7b", "tiny"}
    seven = sizes["7b"]
    assert seven["epoch"] == 2 and seven["verdict"] == "effect"
    assert seven["contrast"]["permutation"]["p_value"] < 0.01
    assert seven["mean_lift_vs_neutral"]["ci_low"] > 0
    assert len(seven["lifts"]) == 15 and len(seven["matrix"]) == 17
    assert set(seven["matrix"]["dog"]) == {*data["labels"]}
    assert data["options"]["bootstrap"] == "questions" and data["options"]["n_permutations"] >= 2000
    assert {(c["size"], c["epoch"]) for c in data["curves"] if c["animal"] == "cat"} == {
        ("7b", 1),
        ("7b", 2),
        ("tiny", 1),
        ("tiny", 2),
    }
    assert any(row["size"] == "tiny" and row["condition"] == "dog" for row in data["data"])
    # tiny: only two animal students, no control: listed, not hidden.
    tiny = sizes["tiny"]
    assert tiny["rows"] == ["neutral", "dog", "cat"]
    assert tiny["contrast"]["permutation"]["exact"] is True
    assert tiny["mean_lift_vs_control"] is None
    reasons = {(m["size"], m["condition"], m["reason"]) for m in data["missing"]}
    assert ("tiny", "control", "base model not evaluated (slscale eval --size tiny --control)") in reasons
    assert ("tiny", "whale", "not evaluated (not trained yet?)") in reasons
    assert not any(m["size"] == "7b" for m in data["missing"])
    missing_md = md[md.index("## Missing") :]
    assert (
        "- tiny, run 1: base model not evaluated (slscale eval --size tiny --control): control" in missing_md
    )
    assert "- tiny, run 1: not evaluated (not trained yet?): elephant, panda" in missing_md


def test_report_epoch_and_runs_options_and_missing_sizes(workdir):
    layout = Layout(workdir)
    write_grid(layout, {"0.5b": 0.0}, conditions=["neutral", "dog", "cat", "fox"], epochs=2, seed=3)

    result = runner.invoke(
        app, ["report", "--epoch", "1", "--run", "1..2", "--bootstrap", "questions+answers"]
    )

    assert result.exit_code == 0, result.output
    md, _, data = _report(layout)
    (size,) = data["sizes"]
    assert size["size"] == "0.5b" and size["epoch"] == 1 and size["runs"] == [1, 2]
    assert data["options"]["bootstrap"] == "questions+answers" and "two-stage" in md
    where = {(m["size"], m["run"], m["reason"]) for m in data["missing"]}
    # The default sizes are the six real ones: those without files are listed.
    assert ("32b", None, "no evaluation data") in where
    assert ("0.5b", 2, "no evaluation data for this run") in where
    assert "- 32B: no evaluation data" in md


def test_report_with_no_evaluation_data_is_one_clear_error(workdir):
    result = runner.invoke(app, ["report"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no evaluation data under")
    assert not (Layout(workdir).reports_dir / "report.md").exists()


def test_report_names_a_malformed_evaluation_file(workdir):
    path = Layout(workdir).eval_json(JobKey(1, "3b", "dog"))
    path.parent.mkdir(parents=True)
    path.write_text('{"epochs": [{"epoch": 1, "answers": [{"label": "dog"}]}]}')
    result = runner.invoke(app, ["report", "--size", "3b"])
    assert result.exit_code == 1
    assert "dog_eval.json" in result.output and "answers" in result.output


@pytest.mark.parametrize(
    "args", [["--run", "3..1"], ["--run", "x"], ["--bootstrap", "answers"], ["--size", "9b"]]
)
def test_report_rejects_bad_options_with_usage_errors(workdir, args):
    result = runner.invoke(app, ["report", *args])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output or "Invalid value" in result.output


def test_parse_runs_accepts_numbers_ranges_and_lists():
    assert parse_runs([]) is None
    assert parse_runs(["2"]) == [2]
    assert parse_runs(["1..3"]) == [1, 2, 3]
    assert parse_runs(["1,4", "2-3"]) == [1, 2, 3, 4]
    with pytest.raises(UsageError):
        parse_runs(["0"])


def test_report_help_describes_the_options():
    result = runner.invoke(app, ["report", "--help"])
    assert result.exit_code == 0
    for option in ("--size", "--run", "--epoch", "--bootstrap", "--workdir"):
        assert option in result.output
