"""Multi-encoder autoencoder: a fully connected and a convolutional encoder share one decoder."""

import torch
import torch.nn as nn

from ad.models.base import Autoencoder
from ad.models.blocks import ConvDecoder, ConvEncoder, mlp
from ad.models.fcn import PIXELS
from ad.models.registry import register_model


@register_model("multi")
class MultiEncoderAutoencoder(Autoencoder):
    def __init__(self, *, fcn_hidden=(64,), fcn_latent_dim=16, channels=(32, 64, 128, 256),
                 cnn_latent_dim=48, crop=None):
        super().__init__(crop=crop)
        self.fcn_encoder = nn.Sequential(nn.Flatten(), mlp([PIXELS, *fcn_hidden, fcn_latent_dim]))
        self.cnn_encoder = ConvEncoder(channels, cnn_latent_dim)
        self.decoder = ConvDecoder(channels, fcn_latent_dim + cnn_latent_dim)

    def encode(self, x):
        return torch.cat([self.fcn_encoder(x), self.cnn_encoder(x)], dim=1)

    def decode(self, z):
        return self.decoder(z)
