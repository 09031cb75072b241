"""`slscale bench`: throughput of our default paths against plain baselines, and the grid projection.

Pure parts (shapes, data, projection) import no torch so they test on CPU in milliseconds; `measure`
and `baselines` import torch/transformers/TRL lazily when a phase runs.
"""
