"""Multi-encoder autoencoder: a fully connected and a convolutional encoder share one decoder."""

import torch
import torch.nn as nn

from ad.data import CENTRE, IMAGE_SIZE
from ad.models.base import Autoencoder
from ad.models.blocks import ConvDecoder, ConvEncoder, mlp
from ad.models.fcn import pixel_count
from ad.models.registry import register_model


@register_model("multi", order=5)
class MultiEncoderAutoencoder(Autoencoder):
    tagline = "two encoders, one decoder"
    summary = ("A fully connected and a convolutional encoder share one decoder; what it cannot "
               "rebuild is anomalous.")
    small_config = {"fcn_hidden": [32], "fcn_latent_dim": 4, "channels": [8, 16, 32], "cnn_latent_dim": 12}

    def __init__(self, *, fcn_hidden=(64,), fcn_latent_dim=8, channels=(32, 64, 128, 256),
                 cnn_latent_dim=8, crop=None, input_size=IMAGE_SIZE,
                 image_size=IMAGE_SIZE, fit=CENTRE):
        super().__init__(crop=crop, input_size=input_size, image_size=image_size, fit=fit)
        self.fcn_encoder = nn.Sequential(nn.Flatten(),
                                         mlp([pixel_count(input_size), *fcn_hidden, fcn_latent_dim]))
        self.cnn_encoder = ConvEncoder(channels, cnn_latent_dim, image_size=input_size)
        self.decoder = ConvDecoder(channels, fcn_latent_dim + cnn_latent_dim, image_size=input_size)

    def encode(self, x):
        return torch.cat([self.fcn_encoder(x), self.cnn_encoder(x)], dim=1)

    def decode(self, z):
        return self.decoder(z)
