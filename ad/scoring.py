"""Residual maps and per-image anomaly scores (higher = more anomalous), batched and gradient-free."""

import numpy as np
import torch
from tqdm.auto import tqdm

from ad.data import validate_images

DEFAULT_BATCH_SIZE = 256


def residual_maps(inputs, reconstructions):
    """Squared error summed over colour channels: (B, 3, H, W) x 2 -> (B, H, W)."""
    return (inputs - reconstructions).pow(2).sum(dim=1)


def scores_from_maps(maps):
    """The homework's score: the L2 norm of the residual over all pixels of an image."""
    return maps.flatten(1).sum(dim=1).sqrt()


@torch.inference_mode()
def reconstruct(model, images):
    """uint8 (B, 64, 64, 3) -> (inputs as the model sees them, reconstructions), both (B, 3, 64, 64)."""
    model.eval()
    inputs = model.preprocess(images)
    return inputs, model(inputs)


@torch.inference_mode()
def anomaly_scores(model, images, batch_size=DEFAULT_BATCH_SIZE, progress=None, desc=None):
    """Scores for a whole array (memory-mapped is fine: it is read one batch at a time).

    `progress`, when given, is called with the fraction done (the app's progress bar); otherwise a
    tqdm bar is shown in the terminal for large inputs.
    """
    images = validate_images(images)
    starts = range(0, len(images), batch_size)
    if progress is None:
        starts = tqdm(starts, desc=desc or f"scoring ({model.architecture})", unit="batch",
                      disable=None if len(starts) >= 8 else True, leave=False)
    scores = []
    for i, start in enumerate(starts):
        inputs, reconstructions = reconstruct(model, images[start:start + batch_size])
        scores.append(scores_from_maps(residual_maps(inputs, reconstructions)).float().cpu())
        if progress is not None:
            progress((i + 1) / len(starts))
    return torch.cat(scores).numpy().astype(np.float64)


@torch.inference_mode()
def explain(model, image):
    """Everything the app shows for one image: input, reconstruction, residual map, score, percentile."""
    inputs, reconstructions = reconstruct(model, validate_images(image))
    maps = residual_maps(inputs, reconstructions)
    score = float(scores_from_maps(maps)[0])
    return {
        "input": inputs[0],
        "reconstruction": reconstructions[0],
        "residual_map": maps[0].cpu().numpy(),
        "score": score,
        "percentile": float(model.percentile(score)) if model.calibrated else None,
    }
