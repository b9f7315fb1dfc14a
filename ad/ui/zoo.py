"""The models the app serves, loaded once at start-up; a checkpoint that fails is reported, not fatal."""

import os
from dataclasses import dataclass, field

from ad import checkpoint
from ad.device import pick_device
from ad.errors import InputError


@dataclass
class Zoo:
    models: dict = field(default_factory=dict)  # name -> loaded model, in display order
    errors: dict = field(default_factory=dict)  # name -> why it could not be loaded

    def get(self, name):
        if name not in self.models:
            reason = self.errors.get(name, "no such model")
            raise InputError(f"model '{name}' is not available: {reason}")
        return self.models[name]


def model_sources(checkpoint_dir, hub_ids=None):
    """Checkpoint folders found under checkpoint_dir, then Hub ids from AD_MODELS (comma-separated)."""
    hub_ids = os.environ.get("AD_MODELS", "") if hub_ids is None else hub_ids
    sources = {name: str(path) for name, path in checkpoint.find(checkpoint_dir).items()}
    for hub_id in filter(None, (h.strip() for h in hub_ids.split(","))):
        sources[hub_id] = hub_id
    return sources


def load_zoo(sources, device=None):
    device = device or pick_device()
    zoo = Zoo()
    for name, source in sources.items():
        try:
            zoo.models[name] = checkpoint.load(source, device=device)
        except (InputError, OSError, RuntimeError) as e:
            zoo.errors[name] = str(e)
    return zoo
