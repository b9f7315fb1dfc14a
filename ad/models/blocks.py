"""Building blocks written once: conv down/up steps, residual blocks, MLPs, conv encoder and decoder."""

import torch.nn as nn

from ad.data import IMAGE_SIZE


def conv_down(c_in, c_out):
    """Halve height and width."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True))


def conv_up(c_in, c_out):
    """Double height and width."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(x + self.body(x))


def mlp(dims, batchnorm=True):
    """Linear layers with BatchNorm + ReLU between them; the last layer stays linear."""
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers += [nn.BatchNorm1d(d_out)] if batchnorm else []
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def bottleneck_side(image_size, stages):
    """Side of the feature map after `stages` halvings; each must leave a whole number of pixels."""
    if image_size % 2 ** stages:
        raise ValueError(f"input size {image_size} cannot be halved {stages} times; "
                         f"expected a multiple of {2 ** stages}")
    return image_size // 2 ** stages


class ConvEncoder(nn.Module):
    """(B, 3, S, S) -> (B, out_dim): strided convs, optional residual blocks, one linear layer."""

    def __init__(self, channels, out_dim, residual_blocks=0, image_size=IMAGE_SIZE):
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers.append(conv_down(c_in, c))
            layers += [ResidualBlock(c) for _ in range(residual_blocks)]
            c_in = c
        side = bottleneck_side(image_size, len(channels))
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c_in * side * side, out_dim)

    def forward(self, x):
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """(B, latent_dim) -> (B, 3, S, S) in [-1, 1]: the encoder's mirror."""

    def __init__(self, channels, latent_dim, residual_blocks=0, image_size=IMAGE_SIZE):
        super().__init__()
        channels = list(reversed(channels))
        side = bottleneck_side(image_size, len(channels))
        self.head = nn.Sequential(nn.Linear(latent_dim, channels[0] * side * side),
                                  nn.Unflatten(1, (channels[0], side, side)),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        layers = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [ResidualBlock(c_in) for _ in range(residual_blocks)]
            layers.append(conv_up(c_in, c_out))
        layers += [nn.ConvTranspose2d(channels[-1], 3, 4, stride=2, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        return self.body(self.head(z))
