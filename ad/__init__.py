"""Anomaly detection on images, learned from normal images only: models, data, scoring, training.

The names below load when first used (PEP 562), so `import ad.data` costs no model or Hub code.
"""

import importlib

from ad.errors import InputError

_LAZY = {"load_model": ("ad.checkpoint", "load"), "create_model": ("ad.models", "create_model"),
         "list_models": ("ad.models", "list_models")}

__all__ = ["InputError", "create_model", "list_models", "load_model"]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'ad' has no attribute '{name}'")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})
