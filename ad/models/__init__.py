"""The detectors (five autoencoders and a geometric self-supervised one), created by name."""

# Import order is the order list_models() gives: the homework's models first.
from ad.models import fcn, cnn, vae, resnet, multi, geo  # noqa: F401, I001  (each registers itself)
from ad.models.base import Autoencoder, Detector
from ad.models.registry import create_model, list_models, load_model, register_model

__all__ = ["Autoencoder", "Detector", "create_model", "list_models", "load_model", "register_model"]
