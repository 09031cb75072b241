"""slscale: the subliminal-learning scaling-law experiment, end to end."""

__version__ = "0.1.0"
