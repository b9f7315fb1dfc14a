"""Per-image anomaly scores (higher = more anomalous), batched; pixel maps and calibration; one image explained."""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ad.data import open_image, validate_images
from ad.device import default_batch_size
from ad.evaluation import roc_auc
from ad.models.base import value_at
from ad.synthetic import add_defects


@torch.inference_mode()
def anomaly_scores(model, images, batch_size=None, progress=None, desc=None):
    """Scores for a whole array of images read at the model's input format, uint8 (N, S, S, 3) with
    S = model.image_size (`load_images(path, **model.input_format)`); memory-mapped is fine: it is
    read one batch at a time.

    `progress`, when given, is called with the fraction done (the app's progress bar); otherwise a
    tqdm bar is shown in the terminal for large inputs.
    """
    model.eval()
    batch_size = batch_size or default_batch_size(model.device)
    images = validate_images(images, size=model.image_size)
    starts = range(0, len(images), batch_size)
    if progress is None:
        starts = tqdm(starts, desc=desc or f"scoring ({model.architecture})", unit="batch",
                      disable=None if len(starts) >= 8 else True, leave=False)
    scores = []
    for start in starts:
        scores.append(model.score(model.preprocess(images[start:start + batch_size])).float().cpu())
        if progress is not None:
            progress(min(start + batch_size, len(images)) / len(images))
    return torch.cat(scores).numpy().astype(np.float64)


def explain_all(model, images, batch_size=None, desc=None):
    """(scores (N,), pixel maps (N, S, S) float32 with S = model.image_size, each image's highest pixel
    score (N,)) for a whole array: the
    pixel maps lie on the picture's square, the crop box's map in its place and zero (no evidence)
    where the model does not look, so that they line up with masks read at the model's format."""
    model.eval()
    batch_size = batch_size or default_batch_size(model.device)
    images = validate_images(images, size=model.image_size)
    starts = range(0, len(images), batch_size)
    scores, peaks = [], []
    maps = np.zeros((len(images), model.image_size, model.image_size), dtype=np.float32)
    for start in tqdm(starts, desc=desc or f"explaining ({model.architecture})", unit="batch",
                      disable=None if len(starts) >= 8 else True, leave=False):
        result = model.explain(model.preprocess(images[start:start + batch_size]))
        scores.append(result.score.detach().float().cpu())
        peaks.append(result.pixels.detach().flatten(1).amax(dim=1).float().cpu())
        maps[start:start + len(result.score)] = on_picture_square(model, result.pixels.detach())
    return torch.cat(scores).numpy().astype(np.float64), maps, torch.cat(peaks).numpy().astype(np.float64)


def calibrate(model, normal_images):
    """Store where held-out normal images' scores and highest pixel scores lie (the verdict's and
    the defect region's thresholds); a combined detector's members first, as its score reads theirs
    (a member that only remembers is calibrated once: after every epoch it is the same)."""
    for member in model.members:
        if member.learns_by_gradient or not member.pixels_calibrated:
            calibrate(member, normal_images)
    scores, _, peaks = explain_all(model, normal_images, desc="calibrating")
    model.calibrate(scores)
    model.calibrate_pixels(peaks)
    return scores


@torch.no_grad()
def remember(model, normal_images, seed=0, batch_size=64, learned=False):
    """Fill the memories of normal images, members first: before training (`learned` False) those of
    the models that only remember (a patch memory); after an epoch (`learned` True) those of the
    models that also learn, whose features have just changed (geo's)."""
    for member in model.members:
        remember(member, normal_images, seed, batch_size, learned)
    if model.remembers and model.learns_by_gradient == learned:
        model.eval()
        if model.memory_images and model.memory_images < len(normal_images):
            chosen = np.random.default_rng(seed).choice(len(normal_images), model.memory_images, replace=False)
            normal_images = normal_images[np.sort(chosen)]
        starts = tqdm(range(0, len(normal_images), batch_size), desc=f"remembering ({model.architecture})",
                      unit="batch", disable=None if len(normal_images) >= 8 * batch_size else True, leave=False)
        model.remember((model.preprocess(normal_images[start:start + batch_size]) for start in starts),
                       len(normal_images), seed)


def on_picture_square(model, pixels):
    """(B, s, s) per-pixel scores of the model's input -> (B, S, S) on the picture's square (numpy)."""
    top, left, height, width = model.crop or (0, 0, model.image_size, model.image_size)
    placed = F.interpolate(pixels.float()[:, None], size=(height, width), mode="bilinear", align_corners=False)
    square = torch.zeros(len(pixels), model.image_size, model.image_size, device=pixels.device)
    square[:, top:top + height, left:left + width] = placed[:, 0]
    return square.cpu().numpy()


@torch.no_grad()
def synthetic_defects_auc(model, normal_images, seed=0, batch_size=64):
    """How well the model tells held-out normal images from the same images with a synthetic defect
    pasted in (ad.synthetic): a figure a model trained on unlabelled normal images can honestly
    have. It measures flaws of the kinds made there, not every anomaly a user may bring."""
    model.eval()
    normal, flawed = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(normal_images), batch_size):
            x = model.preprocess(normal_images[start:start + batch_size])
            normal.append(model.score(x).float().cpu())
            flawed.append(model.score(add_defects(x, share=1.0)[0]).float().cpu())
    scores = torch.cat(normal + flawed).numpy()
    labels = np.r_[np.zeros(len(scores) // 2), np.ones(len(scores) // 2)]
    return roc_auc(labels, scores)


def verdict(percentile, threshold_percentile):
    """An image is anomalous when it scores above the threshold percentile of normal images."""
    return "anomalous" if percentile > threshold_percentile else "normal"


@dataclass
class Detection:
    """One image as a detector saw and judged it: what the app shows, the same for every model."""

    input: torch.Tensor  # (3, S, S) in [-1, 1]: the image as the model reads it (format, crop, size)
    picture: torch.Tensor  # (3, H, W) in [-1, 1]: the model's own picture (model.picture_label)
    heat: np.ndarray  # (S, S) in [0, 1], on the model's fixed scale (model.heat_full_scale)
    pixels: np.ndarray  # (S, S) per-pixel scores, in model.heat_unit
    score: float
    percentile: float  # share of held-out normal images that score lower
    peak_pixel_quantiles: np.ndarray | None  # normal images' highest pixels (model.peak_pixel_quantiles())

    def verdict(self, threshold_percentile=99.0):
        return verdict(self.percentile, threshold_percentile)

    def region(self, threshold_percentile=99.0):
        """The pixels judged defective at this percentile, (S, S) bool, or None for a model without
        pixel calibration. Read off stored thresholds: a slider moves it without running the model."""
        if self.peak_pixel_quantiles is None:
            return None
        return self.pixels > value_at(threshold_percentile, self.peak_pixel_quantiles)


def detect(model, image):
    """Explain one image with a calibrated model: a uint8 (S, S, 3) array already at the model's
    input format, or any picture (a path, bytes, a PIL image, an array of another size), read at it."""
    model.eval()
    side = model.image_size
    if not (isinstance(image, np.ndarray) and image.shape == (side, side, 3)):
        image = open_image(image, **model.input_format)
    x = model.preprocess(validate_images(image, size=side))
    result = model.explain(x)
    score = float(result.score[0])
    return Detection(input=x[0].detach(), picture=result.picture[0].detach(),
                     heat=result.heat[0].detach().float().cpu().numpy(),
                     pixels=result.pixels[0].detach().float().cpu().numpy(), score=score,
                     percentile=float(model.percentile(score)), peak_pixel_quantiles=model.peak_pixel_quantiles())
