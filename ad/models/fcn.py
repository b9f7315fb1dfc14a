"""Fully connected autoencoder: the homework's first model; small latents work well on faces."""

import torch.nn as nn

from ad.data import IMAGE_SIZE
from ad.models.base import Autoencoder
from ad.models.blocks import mlp
from ad.models.registry import register_model

PIXELS = 3 * IMAGE_SIZE * IMAGE_SIZE


@register_model("fcn")
class FullyConnectedAutoencoder(Autoencoder):
    def __init__(self, *, hidden=(128, 64), latent_dim=16, crop=None):
        # hidden[0] dominates the size: 2 * 12288 * hidden[0] weights (128 -> 12.6 MB)
        super().__init__(crop=crop)
        self.encoder = nn.Sequential(nn.Flatten(), mlp([PIXELS, *hidden, latent_dim]))
        self.decoder = nn.Sequential(mlp([latent_dim, *reversed(hidden), PIXELS]), nn.Tanh(),
                                     nn.Unflatten(1, (3, IMAGE_SIZE, IMAGE_SIZE)))

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)
