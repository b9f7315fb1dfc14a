"""What every detector shares (input format, calibration, score and explain, the Hub mixin), and the autoencoder."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from safetensors.torch import save_file

from ad.data import CENTRE, IMAGE_SIZE, check_input_format
from ad.errors import InputError
from ad.files import atomic_path, write_json
from ad.models.registry import CONFIG_FILE, CONFIG_FORMAT, WEIGHTS_FILE, load_folder, looks_like_a_path, read_json
from ad.preprocess import parse_crop, preprocess

CALIBRATION_POINTS = 1001  # quantiles 0.0%, 0.1%, ..., 100.0% of held-out normal scores
TAIL_FROM, TAIL_AT = (round(p / 100 * (CALIBRATION_POINTS - 1)) for p in (90, 99))  # where surprise's tail is fitted
RESIDUAL_AT_FULL_HEAT = 1.0  # RGB distance per pixel (images on [-1, 1]) drawn at full colour
INPUT_FORMAT_OPTIONS = {"image_size", "fit", "crop", "input_size"}  # a member reads its owner's pictures


def quantiles_of(values):
    """CALIBRATION_POINTS quantiles of held-out normal values, as a stored calibration."""
    return torch.as_tensor(np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0, 1, CALIBRATION_POINTS)),
                           dtype=torch.float32)


def is_calibration(quantiles):
    """A stored calibration: finite, sorted and not the initial zeros."""
    return bool(quantiles.any() and torch.isfinite(quantiles).all() and (quantiles[1:] >= quantiles[:-1]).all())


def value_at(percentile, quantiles):
    """The value at this percentile (0-100) of a stored calibration."""
    return float(np.interp(percentile, np.linspace(0, 100, len(quantiles)), quantiles))


def mean_of_highest(maps, share):
    """(B, S, S) -> (B,): the mean of each map's highest `share` of pixels, so that one small flaw
    counts and one noisy pixel does not."""
    flat = maps.flatten(1)
    return flat.topk(max(1, round(share * int(flat.shape[1]))), dim=1).values.mean(dim=1)


def check_member_options(options, refusal):
    """The options of a detector held inside another: a dict (None: its defaults) that leaves the
    input format to the one holding it; anything else is refused with `refusal`."""
    if not isinstance(options, (dict, type(None))) or INPUT_FORMAT_OPTIONS & set(options or {}):
        raise InputError(refusal)


def marked_in_red(x, amount):
    """Pictures (B, 3, S, S) on [-1, 1], each pixel drawn toward red by its amount (B, S, S) in [0, 1]."""
    red = torch.tensor([1.0, -1.0, -1.0], device=x.device)[None, :, None, None]
    return x * (1 - amount[:, None]) + red * amount[:, None]


@dataclass
class Explanation:
    """What a detector says about a batch, the same fields for every model: the UI never asks which."""

    score: torch.Tensor  # (B,) higher = more anomalous
    picture: torch.Tensor  # (B, 3, H, W) in [-1, 1]: the model's own picture (see picture_label)
    pixels: torch.Tensor  # (B, S, S) how anomalous each pixel is, in heat_unit: regions and pixel metrics
    heat: torch.Tensor  # (B, S, S) in [0, 1]: pixels on the model's fixed, data-wide scale (heat_full_scale)


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
    training_defaults = {}  # TrainConfig values this architecture trains best with, unless given
    mirror_sensitive = False  # True when its task tells mirrored images apart: training must not mirror
    has_latent = False  # True when encode(x) and decode(z) give a latent code to explore
    reconstructs = False  # True when `picture` redraws the input, pixel for pixel (a before/after pair)
    members = ()  # detectors inside this one, each calibrated on the same normal images before it
    remembers = False  # True when training fills a memory of normal images (`remember`): first, or
    # after every epoch for a model that also learns by gradient (its features changed)
    memory_images = None  # the most training images `remember` is given, drawn at random (None: all)
    learns_by_gradient = True  # False when that is all its training: it takes no optimizer steps
    max_batch = None  # the most images an exported graph should score at once (None: any number)

    def __init__(self, *, crop=None, input_size=IMAGE_SIZE, image_size=IMAGE_SIZE, fit=CENTRE):
        super().__init__()
        # The input format: pictures are read as image_size squares (fitted as `fit` says, see
        # ad.data.FITS); the crop box lies on that square; what is left is resized to input_size.
        self.image_size, self.fit = check_input_format(image_size, fit)
        self.crop = parse_crop(crop, image_size)
        if not isinstance(input_size, int) or not 8 <= input_size <= 256:
            raise InputError(f"input_size {input_size!r}: expected a whole number of pixels from 8 to 256")
        self.input_size = input_size  # side of the square the (cropped) image is resized to
        # Scores of held-out normal images, filled after training; they travel in model.safetensors.
        self.register_buffer("normal_score_quantiles", torch.zeros(CALIBRATION_POINTS))
        # ... and the highest pixel score of each of those images: where a defect region starts.
        self.register_buffer("normal_peak_pixel_quantiles", torch.zeros(CALIBRATION_POINTS))
        self.metrics, self.training_record = {}, {}  # metrics.json and training.json, set by ad.checkpoint

    @property
    def input_format(self):
        """How every reader must read pictures for this model: `load_images(path, **model.input_format)`."""
        return {"size": self.image_size, "fit": self.fit}

    def sees(self):
        """What part of a picture the model reads, in words."""
        square = f"{self.image_size}x{self.image_size}"
        picture = (f"the picture's centre square, resized to {square}" if self.fit == CENTRE
                   else f"the whole picture, resized to {square} (its aspect ratio not kept)")
        if self.crop is None:
            return f"{picture}, at {self.input_size} px"
        top, left, height, width = self.crop
        return (f"only the box at row {top}, column {left}, {height}x{width} px of the {square} image (at "
                f"{self.input_size} px), {picture}; the rest is not seen")

    def loss(self, x):  # (B, 3, S, S), S = input_size -> training loss
        raise NotImplementedError

    def score(self, x):  # (B, 3, S, S) -> (B,) anomaly scores
        raise NotImplementedError

    def explain(self, x):  # (B, 3, S, S) -> Explanation
        raise NotImplementedError

    def remember(self, batches, image_count, seed=0):  # model inputs of the training images -> memory filled
        raise NotImplementedError

    def explanation(self, score, picture, pixels):
        """The Explanation of per-pixel scores: the heat map is them on the model's fixed scale, never
        rescaled to one image's own maximum (a normal part must not light up because its image is calm)."""
        return Explanation(score=score, picture=picture, pixels=pixels,
                           heat=(pixels / self.heat_full_scale).clamp(0, 1))

    @property
    def options(self):
        """The constructor's arguments: what config.json holds besides the architecture and its format."""
        return dict(self._hub_mixin_config)

    @property
    def config(self):
        return {"architecture": self.architecture, "format": CONFIG_FORMAT, **self.options}

    @classmethod
    def upgrade_options(cls, options, written_in):
        """The constructor's arguments for a config.json of an older format (`written_in`), meaning
        what they meant when its checkpoint was trained (ad.models.registry.CONFIG_FORMAT)."""
        return options

    @property
    def device(self):
        return self.normal_score_quantiles.device

    def preprocess(self, images):
        """uint8 (B, S, S, 3), S = image_size -> what this model reads: its own crop at its own size, on its device."""
        return preprocess(images, self.crop, self.input_size, self.device)

    def parameter_count(self):
        return sum(p.numel() for p in self.parameters())

    # ---------------------------------------------------------------- the Hub mixin, made strict

    @classmethod
    def _from_pretrained(cls, *, model_id, revision, cache_dir, force_download, local_files_only, token,
                         map_location="cpu", strict=True, **model_kwargs):
        """The mixin's hook: a local folder, or config.json and model.safetensors of a Hub repo
        (downloaded honouring revision, cache_dir, token, ...), loaded strictly or not at all."""
        if not strict:
            raise InputError(f"{model_id}: checkpoints load strictly (strict=True) or not at all")
        folder = Path(model_id)
        if not folder.is_dir():
            if looks_like_a_path(model_id):
                raise InputError(f"{model_id}: no such checkpoint folder")
            hub = dict(revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
                       local_files_only=local_files_only)
            config = hf_hub_download(model_id, CONFIG_FILE, **hub)  # the mixin's copy, from the cache
            folder = Path(hf_hub_download(model_id, WEIGHTS_FILE, **hub)).parent
            if folder != Path(config).parent:
                raise InputError(f"{model_id}: the repo changed while it was downloaded; try again")
        model = load_folder(folder, name=model_id)
        if not isinstance(model, cls):
            raise InputError(f"{model_id}: holds a '{model.architecture}' model, not a {cls.__name__}")
        written = read_json(folder / CONFIG_FILE)
        changed = [k for k, v in model_kwargs.items() if json.loads(json.dumps(v)) != written.get(k, object())]
        if changed:  # the mixin passes config.json's own values; a checkpoint's weights fit no other
            raise InputError(f"{model_id}: from_pretrained loads the configuration in {CONFIG_FILE} as it "
                             f"is; {', '.join(sorted(changed))} cannot be given here")
        return model.to(map_location)

    def _save_pretrained(self, save_directory):
        """The mixin's hook: model.safetensors and config.json, each replaced atomically (ad.checkpoint
        adds the record and the model card)."""
        self.check_calibrated()
        with atomic_path(Path(save_directory) / WEIGHTS_FILE) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(tmp))
        write_json(Path(save_directory) / CONFIG_FILE, self.config)

    # ---------------------------------------------------------------- calibration

    @property
    def calibrated(self):
        """True once held-out normal scores are stored: finite, sorted, not the initial zeros."""
        return is_calibration(self.normal_score_quantiles)

    def check_calibrated(self):
        if not self.calibrated:
            raise InputError(f"{self.architecture}: the model is not calibrated; call "
                             "model.calibrate(scores of held-out normal images) before saving")

    def calibrate(self, normal_scores):
        self.normal_score_quantiles.copy_(quantiles_of(normal_scores))

    @property
    def pixels_calibrated(self):
        """True once the highest pixel scores of held-out normal images are stored (training does it)."""
        return is_calibration(self.normal_peak_pixel_quantiles)

    def calibrate_pixels(self, peak_pixel_scores):
        """Store the quantiles of held-out normal images' highest pixel scores."""
        self.normal_peak_pixel_quantiles.copy_(quantiles_of(peak_pixel_scores))

    def peak_pixel_quantiles(self):
        """The stored quantiles of normal images' highest pixels (numpy), or None without pixel calibration."""
        return self.normal_peak_pixel_quantiles.cpu().numpy().astype(np.float64) if self.pixels_calibrated else None

    def normal_peak(self, fallback=1.0):
        """The highest pixel score of a normal image at the 99th percentile: one scale for every
        image's heat (full colour there), or `fallback` without pixel calibration."""
        return self.pixel_threshold(99.0) or fallback

    def pixel_threshold(self, percentile=99.0):
        """The pixel score above which a pixel belongs to a defect region at this percentile: that
        share of normal images shows no region at all, as that share of them is judged normal.
        None when the model has no pixel calibration (a checkpoint written before it existed)."""
        quantiles = self.peak_pixel_quantiles()
        return None if quantiles is None else value_at(percentile, quantiles)

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
        return value_at(percentile, self._quantiles())

    def surprise(self, scores):
        """-ln(share of held-out normal images scoring at least as high), in torch (ONNX): 0.7 at their
        median, ln 100 = 4.6 at their 99th percentile. Past it, where a few hundred images say little,
        the tail goes on as an exponential through the 90th and 99th percentiles (each such distance a
        tenth as likely), so the rarest images still rank. Surprises of detectors add up (Fisher's method)."""
        quantiles = self.normal_score_quantiles
        # the share below, interpolated between successive quantiles (continuous, no searchsorted)
        steps = (scores[:, None] - quantiles[None, :-1]) / (quantiles[1:] - quantiles[:-1]).clamp_min(1e-12)
        share_below = steps.clamp(0, 1).mean(dim=1).clamp(max=0.99)
        spread = (quantiles[TAIL_AT] - quantiles[TAIL_FROM]).clamp_min(1e-12)
        tail = math.log(100) + math.log(10) * (scores - quantiles[TAIL_AT]) / spread
        return torch.where(scores > quantiles[TAIL_AT], tail, -torch.log1p(-share_below))


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
        return self.explanation(maps.flatten(1).sum(dim=1).sqrt(), reconstruction, maps.sqrt())
