"""Autoencoder whose encoder and decoder stack residual blocks between resolution changes."""

from ad.models.base import Autoencoder
from ad.models.blocks import ConvDecoder, ConvEncoder
from ad.models.registry import register_model


@register_model("resnet")
class ResNetAutoencoder(Autoencoder):
    def __init__(self, *, channels=(32, 64, 128), latent_dim=64, blocks_per_stage=1, crop=None):
        super().__init__(crop=crop)
        self.encoder = ConvEncoder(channels, latent_dim, residual_blocks=blocks_per_stage)
        self.decoder = ConvDecoder(channels, latent_dim, residual_blocks=blocks_per_stage)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)
