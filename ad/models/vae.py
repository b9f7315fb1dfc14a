"""Variational autoencoder; reconstructs from the posterior mean at evaluation time."""

import torch

from ad.data import CENTRE, IMAGE_SIZE
from ad.models.base import Autoencoder
from ad.models.blocks import ConvDecoder, ConvEncoder
from ad.models.registry import register_model


@register_model("vae", order=3)
class VariationalAutoencoder(Autoencoder):
    tagline = "variational autoencoder"
    summary = ("A variational autoencoder: it rebuilds the image from the mean of its code; what it "
               "cannot rebuild is anomalous.")
    small_config = {"channels": [8, 16, 32], "latent_dim": 16}

    def __init__(self, *, channels=(32, 64, 128, 256), latent_dim=16, kl_weight=1e-2, crop=None,
                 input_size=IMAGE_SIZE, image_size=IMAGE_SIZE, fit=CENTRE):
        # kl_weight scales the KL term against the per-pixel mean squared error: at 1 (the
        # homework's choice) the KL term swamps reconstruction and every output is the mean face
        super().__init__(crop=crop, input_size=input_size, image_size=image_size, fit=fit)
        self.kl_weight = kl_weight
        self.encoder = ConvEncoder(channels, 2 * latent_dim, image_size=input_size)  # -> (mean, log variance)
        self.decoder = ConvDecoder(channels, latent_dim, image_size=input_size)

    def posterior(self, x):
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var.clamp(-10, 10)

    def encode(self, x):
        return self.posterior(x)[0]

    def decode(self, z):
        return self.decoder(z)

    def loss(self, x):
        mean, log_var = self.posterior(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        reconstruction_error = (self.decoder(z) - x).pow(2).mean()
        kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1).mean()
        return reconstruction_error + self.kl_weight * kl / x[0].numel()
