"""Fully connected autoencoder: the homework's first model; small latents work well on faces."""

import torch.nn as nn

from ad.data import CENTRE, IMAGE_SIZE
from ad.models.base import Autoencoder
from ad.models.blocks import mlp
from ad.models.registry import register_model


def pixel_count(image_size):
    return 3 * image_size * image_size


@register_model("fcn", order=1)
class FullyConnectedAutoencoder(Autoencoder):
    tagline = "fully connected autoencoder"
    summary = ("A fully connected autoencoder (the homework's first model): it squeezes the image "
               "through a small code and rebuilds it; what it cannot rebuild is anomalous.")
    small_config = {"hidden": [64], "latent_dim": 8}

    def __init__(self, *, hidden=(128, 64), latent_dim=16, crop=None, input_size=IMAGE_SIZE,
                 image_size=IMAGE_SIZE, fit=CENTRE):
        # hidden[0] dominates the size: 2 * 3 * input_size**2 * hidden[0] weights (64 px: 12.6 MB)
        super().__init__(crop=crop, input_size=input_size, image_size=image_size, fit=fit)
        pixels = pixel_count(input_size)
        self.encoder = nn.Sequential(nn.Flatten(), mlp([pixels, *hidden, latent_dim]))
        self.decoder = nn.Sequential(mlp([latent_dim, *reversed(hidden), pixels]), nn.Tanh(),
                                     nn.Unflatten(1, (3, input_size, input_size)))

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)
