"""Convolutional autoencoder with a linear bottleneck (without one, a CNN copies anomalies too)."""

from ad.models.base import Autoencoder
from ad.models.blocks import ConvDecoder, ConvEncoder
from ad.models.registry import register_model


@register_model("cnn")
class ConvAutoencoder(Autoencoder):
    def __init__(self, *, channels=(32, 64, 128, 256), latent_dim=64, crop=None):
        super().__init__(crop=crop)
        self.encoder = ConvEncoder(channels, latent_dim)
        self.decoder = ConvDecoder(channels, latent_dim)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)
