"""One colour per animal (and per model kind) across every chart and report."""

from __future__ import annotations

from sl_scaling.catalog import ANIMALS

# Tableau-20-like, chosen so neighbours in the animal order stay distinguishable.
_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
)
ANIMAL_COLOURS: dict[str, str] = dict(zip(ANIMALS, _COLOURS, strict=True))
OTHERS = "others"
OTHERS_COLOUR = "#d9d9d9"
#: Bars of the grouped chart: base model, neutral student, the animal's own student.
MODEL_KIND_COLOURS: dict[str, str] = {"Control": "#9e9e9e", "Neutral": "#4c78a8", "Animal": "#e45756"}


def colour(label: str) -> str:
    return ANIMAL_COLOURS.get(label, OTHERS_COLOUR)
