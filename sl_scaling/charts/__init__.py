"""Every chart, one home each, in one look.

`style.py` (fonts, titles, size and model labels) and `palette.py` (one colour per animal) give the look;
`render.py` turns a chart into PNG bytes and saves PNG + HTML atomically; `plots.py` holds the charts of
`slscale plot` (per size, and the scaling chart the report draws too), `report.py` the report's own. A new
chart is a function in one of those two, returning an Altair chart built from the results reader's data.
"""
