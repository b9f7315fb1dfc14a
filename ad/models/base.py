"""The interface every architecture shares: encode, decode, loss, preprocessing and calibration."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin

from ad.data import parse_crop, preprocess

CALIBRATION_POINTS = 1001  # quantiles 0.0%, 0.1%, ..., 100.0% of held-out normal scores


class Autoencoder(nn.Module, PyTorchModelHubMixin, library_name="anomaly-detection-demo",
                  tags=["anomaly-detection", "autoencoder", "hw8"], license="mit"):
    """Subclasses set `encode` and `decode`; their `__init__` keyword arguments are `config.json`."""

    architecture = None  # set by @register_model

    def __init__(self, *, crop=None):
        super().__init__()
        self.crop = parse_crop(crop)
        # Scores of held-out normal images, filled after training; they travel in model.safetensors.
        self.register_buffer("normal_score_quantiles", torch.zeros(CALIBRATION_POINTS))

    def encode(self, x):  # (B, 3, 64, 64) -> (B, latent_dim)
        raise NotImplementedError

    def decode(self, z):  # (B, latent_dim) -> (B, 3, 64, 64)
        raise NotImplementedError

    def forward(self, x):
        return self.decode(self.encode(x))

    def loss(self, x):
        return F.mse_loss(self(x), x)

    @property
    def config(self):
        return {"architecture": self.architecture, **self._hub_mixin_config}

    @property
    def device(self):
        return self.normal_score_quantiles.device

    def preprocess(self, images):
        """uint8 (B, 64, 64, 3) -> what this model reads: its own crop, on its own device."""
        return preprocess(images, self.crop, self.device)

    # ---------------------------------------------------------------- calibration

    @property
    def calibrated(self):
        return bool(self.normal_score_quantiles[-1] > 0)

    def calibrate(self, normal_scores):
        levels = np.linspace(0, 1, CALIBRATION_POINTS)
        quantiles = np.quantile(np.asarray(normal_scores, dtype=np.float64), levels)
        self.normal_score_quantiles.copy_(torch.as_tensor(quantiles, dtype=torch.float32))

    def percentile(self, scores):
        """Share (0-100) of held-out normal images that score lower: 99 = more anomalous than 99%."""
        if not self.calibrated:
            raise RuntimeError(f"{self.architecture}: checkpoint has no calibration (train.py writes it)")
        quantiles = self.normal_score_quantiles.cpu().numpy().astype(np.float64)
        # np.interp needs increasing x; ties among quantiles are spread by the tiny ramp
        quantiles = quantiles + np.arange(len(quantiles)) * 1e-12
        return np.interp(scores, quantiles, np.linspace(0, 100, CALIBRATION_POINTS))

    def threshold(self, percentile=99.0):
        """The score above which an image is called anomalous at this percentile of normal scores."""
        quantiles = self.normal_score_quantiles.cpu().numpy().astype(np.float64)
        return float(np.interp(percentile, np.linspace(0, 100, CALIBRATION_POINTS), quantiles))

    def parameter_count(self):
        return sum(p.numel() for p in self.parameters())
