"""The architectures, created by name from one registry."""

# Import order is the order list_models() gives: the homework's models first.
from ad.models import fcn, cnn, vae, resnet, multi  # noqa: F401, I001  (each registers itself)
from ad.models.base import Autoencoder
from ad.models.registry import create_model, list_models, load_model, register_model

__all__ = ["Autoencoder", "create_model", "list_models", "load_model", "register_model"]
