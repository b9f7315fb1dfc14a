"""What every detector shares (preprocessing, calibration, score and explain), and the autoencoder."""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin

from ad.data import IMAGE_SIZE, parse_crop, preprocess
from ad.errors import InputError

CALIBRATION_POINTS = 1001  # quantiles 0.0%, 0.1%, ..., 100.0% of held-out normal scores
RESIDUAL_AT_FULL_HEAT = 1.0  # RGB distance per pixel (images on [-1, 1]) drawn at full colour


@dataclass
class Explanation:
    """What a detector says about a batch, the same fields for every model: the UI never asks which."""

    score: torch.Tensor  # (B,) higher = more anomalous
    picture: torch.Tensor  # (B, 3, H, W) in [-1, 1]: the model's own picture (see picture_label)
    heat: torch.Tensor  # (B, S, S) in [0, 1]: where the score comes from, on the model's fixed scale


class Detector(nn.Module, PyTorchModelHubMixin, library_name="anomaly-detection-demo",
               tags=["anomaly-detection", "hw8"], license="mit"):
    """Trained on normal images only; scores any image (higher = more anomalous) and shows why.

    Subclasses define `loss`, `score` and `explain`; their `__init__` keyword arguments are
    `config.json`, and the class attributes below are what the app and the model card say of them.
    """

    architecture = None  # set by @register_model
    tagline = ""  # a few words for a menu
    summary = ""  # one sentence: what it is and why it flags anomalies
    score_description = ""
    picture_label = ""  # the picture `explain` returns beside the input
    heat_title = ""  # what the heat map shows, in a few words
    heat_unit = ""  # what a heat value measures
    heat_full_scale = 1.0  # the value drawn at full colour, in heat_unit
    small_config = {}  # a real configuration that trains in seconds on a CPU (tests, quick demos)
    mirror_sensitive = False  # True when its task tells mirrored images apart: training must not mirror
    has_latent = False  # True when encode(x) and decode(z) give a latent code to explore
    reconstructs = False  # True when `picture` redraws the input, pixel for pixel (a before/after pair)

    def __init__(self, *, crop=None, input_size=IMAGE_SIZE):
        super().__init__()
        self.crop = parse_crop(crop)
        if not isinstance(input_size, int) or not 8 <= input_size <= 256:
            raise InputError(f"input_size {input_size!r}: expected a whole number of pixels from 8 to 256")
        self.input_size = input_size  # side of the square the (cropped) image is resized to
        # Scores of held-out normal images, filled after training; they travel in model.safetensors.
        self.register_buffer("normal_score_quantiles", torch.zeros(CALIBRATION_POINTS))
        self.metrics, self.training_record = {}, {}  # metrics.json and training.json, set by loading

    def sees(self):
        """What part of the 64x64 image the model reads, in words."""
        if self.crop is None:
            return f"the whole image, at {self.input_size} px"
        top, left, height, width = self.crop
        return (f"only the box at row {top}, column {left}, {height}x{width} px of the 64x64 image (at "
                f"{self.input_size} px); the rest is not seen")

    def loss(self, x):  # (B, 3, S, S), S = input_size -> training loss
        raise NotImplementedError

    def score(self, x):  # (B, 3, S, S) -> (B,) anomaly scores
        raise NotImplementedError

    def explain(self, x):  # (B, 3, S, S) -> Explanation
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

    # ---------------------------------------------------------------- the Hub mixin, made strict

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision=None, map_location="cpu",
                        **ignored):
        """Load through ad.checkpoint, the one strict loader (the mixin's own is not strict)."""
        from ad.checkpoint import load  # checkpoint sits above the models; imported when used

        model = load(pretrained_model_name_or_path, device=map_location, revision=revision)
        if not isinstance(model, cls):
            raise InputError(f"{pretrained_model_name_or_path}: holds a '{model.architecture}' "
                             f"model, not a {cls.__name__}")
        return model

    @classmethod
    def _from_pretrained(cls, *, model_id, revision=None, map_location="cpu", **ignored):
        return cls.from_pretrained(model_id, revision=revision, map_location=map_location)

    def save_pretrained(self, save_directory, **ignored):
        """Write the checkpoint folder through ad.checkpoint (atomic, with the model card)."""
        from ad.checkpoint import save
        save(self, save_directory, training=self.training_record or None, metrics=self.metrics or None)

    # ---------------------------------------------------------------- calibration

    @property
    def calibrated(self):
        """True once held-out normal scores are stored: finite, sorted, not the initial zeros."""
        q = self.normal_score_quantiles
        return bool(q.any() and torch.isfinite(q).all() and (q[1:] >= q[:-1]).all())

    def calibrate(self, normal_scores):
        levels = np.linspace(0, 1, CALIBRATION_POINTS)
        quantiles = np.quantile(np.asarray(normal_scores, dtype=np.float64), levels)
        self.normal_score_quantiles.copy_(torch.as_tensor(quantiles, dtype=torch.float32))

    def _quantiles(self):
        if not self.calibrated:
            raise InputError(f"{self.architecture}: the model is not calibrated, so its scores cannot "
                             "be compared with normal images (training calibrates it)")
        return self.normal_score_quantiles.cpu().numpy().astype(np.float64)

    def percentile(self, scores):
        """Share (0-100) of held-out normal images that score lower: 99 = more anomalous than 99%."""
        # np.interp needs increasing x; ties among quantiles are spread by the tiny ramp
        quantiles = self._quantiles() + np.arange(CALIBRATION_POINTS) * 1e-12
        return np.interp(scores, quantiles, np.linspace(0, 100, CALIBRATION_POINTS))

    def threshold(self, percentile=99.0):
        """The score above which an image is called anomalous at this percentile of normal scores."""
        return float(np.interp(percentile, np.linspace(0, 100, CALIBRATION_POINTS), self._quantiles()))


class Autoencoder(Detector, tags=["autoencoder"]):
    """Rebuilds what it learned; what it cannot rebuild is anomalous. Subclasses set encode/decode."""

    score_description = ("the L2 norm of the residual between the image and its reconstruction "
                         "(the homework's score)")
    picture_label = "Reconstruction"
    heat_title = "Residual: where the rebuild differs"
    heat_unit = "RGB distance per pixel (pixels on a -1..1 scale)"
    heat_full_scale = RESIDUAL_AT_FULL_HEAT
    has_latent = True
    reconstructs = True

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
        return self.explain(x).score

    @torch.no_grad()
    def explain(self, x):
        reconstruction = self(x)
        maps = self.residual_maps(x, reconstruction)
        return Explanation(score=maps.flatten(1).sum(dim=1).sqrt(), picture=reconstruction,
                           heat=(maps.sqrt() / RESIDUAL_AT_FULL_HEAT).clamp(0, 1))
