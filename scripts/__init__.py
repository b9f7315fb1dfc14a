"""The maintainer's scripts, run from the repository's root as modules: `python -m scripts.push_defaults`."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: checkpoints/, examples/
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before anything imports gradio
