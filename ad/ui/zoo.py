"""The models the app serves, loaded once at start-up; a checkpoint that fails is reported, not fatal."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from ad.data import InputError
from ad.models import list_models, load_model
from ad.training import pick_device

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


@dataclass
class Zoo:
    models: dict = field(default_factory=dict)  # name -> loaded model, in display order
    errors: dict = field(default_factory=dict)  # name -> why it could not be loaded

    def get(self, name):
        if name not in self.models:
            reason = self.errors.get(name, "no such model")
            raise InputError(f"model '{name}' is not available: {reason}")
        return self.models[name]


def model_sources(checkpoint_dir=DEFAULT_CHECKPOINTS, hub_ids=None):
    """Checkpoint folders found under checkpoint_dir, then Hub ids from AD_MODELS (comma-separated)."""
    hub_ids = os.environ.get("AD_MODELS", "") if hub_ids is None else hub_ids
    folders = sorted((p for p in Path(checkpoint_dir).iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=_display_order) if Path(checkpoint_dir).is_dir() else []
    sources = {p.name: str(p) for p in folders}
    for hub_id in filter(None, (h.strip() for h in hub_ids.split(","))):
        sources[hub_id] = hub_id
    return sources


def _display_order(path):
    names = list_models()
    return (names.index(path.name) if path.name in names else len(names), path.name)


def load_zoo(sources, device=None):
    device = device or pick_device()
    zoo = Zoo()
    for name, source in sources.items():
        try:
            zoo.models[name] = load_model(source, device=device)
        except (InputError, OSError, RuntimeError) as e:
            zoo.errors[name] = str(e)
    return zoo
