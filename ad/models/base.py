"""What every detector shares (preprocessing, calibration, score and explain), and the autoencoder."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin

from ad.data import IMAGE_SIZE, InputError, parse_crop, preprocess

CALIBRATION_POINTS = 1001  # quantiles 0.0%, 0.1%, ..., 100.0% of held-out normal scores
RESIDUAL_AT_FULL_HEAT = 1.0  # RGB distance per pixel (images on [-1, 1]) drawn at full colour


class Detector(nn.Module, PyTorchModelHubMixin, library_name="anomaly-detection-demo",
               tags=["anomaly-detection", "hw8"], license="mit"):
    """Trained on normal images only; scores any image (higher = more anomalous) and shows why.

    Subclasses define `loss`, `score` and `explain`; their `__init__` keyword arguments are
    `config.json`, and the class attributes below are what the app and model card say of them.
    """

    architecture = None  # set by @register_model
    score_description = ""
    picture_label = ""  # the picture `explain` returns beside the input
    heat_label = ""  # what the heat map's full colour means

    def __init__(self, *, crop=None, input_size=IMAGE_SIZE):
        super().__init__()
        self.crop = parse_crop(crop)
        if not isinstance(input_size, int) or not 8 <= input_size <= 256:
            raise InputError(f"input_size {input_size!r}: expected a whole number of pixels from 8 to 256")
        self.input_size = input_size  # side of the square the (cropped) image is resized to
        # Scores of held-out normal images, filled after training; they travel in model.safetensors.
        self.register_buffer("normal_score_quantiles", torch.zeros(CALIBRATION_POINTS))
        self.metrics = {}  # the checkpoint's metrics.json, set by load_model: what the app reports

    def loss(self, x):  # (B, 3, S, S), S = input_size -> training loss
        raise NotImplementedError

    def score(self, x):  # (B, 3, S, S) -> (B,) anomaly scores
        raise NotImplementedError

    def explain(self, x):
        """-> {"score": (B,), "picture": (B, 3, H, W) in [-1, 1], "heat": (B, S, S) in [0, 1]}."""
        raise NotImplementedError

    @property
    def config(self):
        return {"architecture": self.architecture, **self._hub_mixin_config}

    @property
    def device(self):
        return self.normal_score_quantiles.device

    def preprocess(self, images):
        """uint8 (B, 64, 64, 3) -> what this model reads: its own crop at its own size, on its device."""
        return preprocess(images, self.crop, self.input_size, self.device)

    def parameter_count(self):
        return sum(p.numel() for p in self.parameters())

    # ---------------------------------------------------------------- calibration

    @property
    def calibrated(self):
        return bool(self.normal_score_quantiles.any())  # zeros until train.py calibrates

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


class Autoencoder(Detector, tags=["autoencoder"]):
    """Rebuilds what it learned; what it cannot rebuild is anomalous. Subclasses set encode/decode."""

    score_description = ("the L2 norm of the residual between the image and its reconstruction "
                         "(the homework's score)")
    picture_label = "Reconstruction"
    heat_label = (f"residual per pixel: RGB distance on the [-1, 1] scale, full colour at "
                  f"{RESIDUAL_AT_FULL_HEAT:g} (the same for every image and autoencoder)")

    def encode(self, x):  # (B, 3, S, S) -> (B, latent_dim)
        raise NotImplementedError

    def decode(self, z):  # (B, latent_dim) -> (B, 3, S, S)
        raise NotImplementedError

    def forward(self, x):
        return self.decode(self.encode(x))

    def loss(self, x):
        return F.mse_loss(self(x), x)

    @staticmethod
    def residual_maps(x, reconstruction):
        """Squared error summed over colour channels: (B, 3, H, W) x 2 -> (B, H, W)."""
        return (x - reconstruction).pow(2).sum(dim=1)

    def score(self, x):
        return self.explain(x)["score"]

    @torch.no_grad()
    def explain(self, x):
        reconstruction = self(x)
        maps = self.residual_maps(x, reconstruction)
        return {"score": maps.flatten(1).sum(dim=1).sqrt(), "picture": reconstruction,
                "heat": (maps.sqrt() / RESIDUAL_AT_FULL_HEAT).clamp(0, 1)}
