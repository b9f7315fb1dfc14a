"""Autoencoder whose encoder and decoder stack residual blocks between resolution changes."""

from ad.data import CENTRE, IMAGE_SIZE
from ad.models.base import Autoencoder
from ad.models.blocks import ConvDecoder, ConvEncoder
from ad.models.registry import register_model


@register_model("resnet", order=4)
class ResNetAutoencoder(Autoencoder):
    tagline = "residual autoencoder"
    summary = ("An autoencoder with residual blocks in its encoder and decoder; what it cannot "
               "rebuild is anomalous.")
    small_config = {"channels": [8, 16], "latent_dim": 16, "blocks_per_stage": 1}

    def __init__(self, *, channels=(32, 64, 128), latent_dim=16, blocks_per_stage=1, crop=None,
                 input_size=IMAGE_SIZE, image_size=IMAGE_SIZE, fit=CENTRE):
        super().__init__(crop=crop, input_size=input_size, image_size=image_size, fit=fit)
        self.encoder = ConvEncoder(channels, latent_dim, blocks_per_stage, image_size=input_size)
        self.decoder = ConvDecoder(channels, latent_dim, blocks_per_stage, image_size=input_size)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)
