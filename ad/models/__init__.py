"""The detectors, one file each, created by name; every module here but the shared ones registers one."""

import importlib
import pkgutil

from ad.models.base import Autoencoder, Detector, Explanation
from ad.models.registry import create_model, list_models, load_folder, model_class, register_model

SHARED_MODULES = {"base", "blocks", "registry"}
for _module in pkgutil.iter_modules(__path__):  # adding an architecture is adding its file
    if _module.name not in SHARED_MODULES:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Autoencoder", "Detector", "Explanation", "create_model", "list_models", "load_folder", "model_class",
           "register_model"]
