"""Reconstruction-based anomaly detection on 64x64 images: models, data, scoring, training."""

from ad.data import InputError
from ad.models import create_model, list_models, load_model

__all__ = ["InputError", "create_model", "list_models", "load_model"]
