"""Per-image anomaly scores (higher = more anomalous), batched and gradient-free, and explanations."""

import numpy as np
import torch
from tqdm.auto import tqdm

from ad.data import validate_images

DEFAULT_BATCH_SIZE = 64  # small batches stay in CPU cache: faster than 256 (benchmarks/benchmark.py)


@torch.inference_mode()
def anomaly_scores(model, images, batch_size=DEFAULT_BATCH_SIZE, progress=None, desc=None):
    """Scores for a whole array (memory-mapped is fine: it is read one batch at a time).

    `progress`, when given, is called with the fraction done (the app's progress bar); otherwise a
    tqdm bar is shown in the terminal for large inputs.
    """
    model.eval()
    images = validate_images(images)
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


def explain(model, image):
    """What the app shows for one image: the input as the model sees it, the model's picture
    (a reconstruction, or the views it judged), a heat map in [0, 1], score and percentile."""
    model.eval()
    x = model.preprocess(validate_images(image))
    result = model.explain(x)
    score = float(result["score"][0])
    return {"input": x[0].detach(), "picture": result["picture"][0].detach(),
            "heat": result["heat"][0].detach().float().cpu().numpy(), "score": score,
            "percentile": float(model.percentile(score)) if model.calibrated else None}
