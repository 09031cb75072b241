"""Rendering: a chart to PNG (vl-convert, offline) and to files, written atomically through files.py."""

from __future__ import annotations

from pathlib import Path

import altair as alt

from sl_scaling.charts.style import PNG_SCALE
from sl_scaling.files import atomic_write_bytes, atomic_write_text


def to_png(chart: alt.TopLevelMixin) -> bytes:
    """Render offline with vl-convert (no browser, no CDN); imported here, not on every CLI start."""
    import vl_convert

    return vl_convert.vegalite_to_png(chart.to_dict(), scale=PNG_SCALE)


def save_chart(chart: alt.TopLevelMixin, png: Path) -> list[Path]:
    """Save `png` (crisp: scale factor 2) and a self-contained `.html` beside it, each atomically."""
    html = png.with_suffix(".html")
    atomic_write_bytes(png, to_png(chart))
    atomic_write_text(html, chart.to_html(inline=True))
    return [png, html]
