"""The `slscale` command line."""

import os

# Set before any command module imports transformers: its and huggingface_hub's progress bars would
# draw over our own dashboard and log lines.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
