"""The benchmarks, run from the repository's root as modules: `python -m benchmarks.speed`."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: checkpoints/, examples/, README.md
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before anything imports gradio
