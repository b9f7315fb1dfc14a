"""Anomaly detection on 64x64 images, learned from normal images only: models, data, scoring, training."""

from ad.checkpoint import load as load_model
from ad.errors import InputError
from ad.models import create_model, list_models

__all__ = ["InputError", "create_model", "list_models", "load_model"]
