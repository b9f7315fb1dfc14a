"""Per-image anomaly scores (higher = more anomalous), batched and gradient-free; one image explained."""

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ad.data import open_image, validate_images
from ad.device import default_batch_size


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


def verdict(percentile, threshold_percentile):
    """An image is anomalous when it scores above the threshold percentile of normal images."""
    return "anomalous" if percentile > threshold_percentile else "normal"


@dataclass
class Detection:
    """One image as a detector saw and judged it: what the app shows, the same for every model."""

    input: torch.Tensor  # (3, S, S) in [-1, 1]: the image as the model reads it (format, crop, size)
    picture: torch.Tensor  # (3, H, W) in [-1, 1]: the model's own picture (model.picture_label)
    heat: np.ndarray  # (S, S) in [0, 1], on the model's fixed scale (model.heat_full_scale)
    score: float
    percentile: float  # share of held-out normal images that score lower

    def verdict(self, threshold_percentile=99.0):
        return verdict(self.percentile, threshold_percentile)


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
                     heat=result.heat[0].detach().float().cpu().numpy(), score=score,
                     percentile=float(model.percentile(score)))
