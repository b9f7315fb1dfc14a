"""Per-image anomaly scores (higher = more anomalous), batched and gradient-free, and explanations."""

import numpy as np
import torch
from tqdm.auto import tqdm

from ad.data import validate_images

# A CPU is fastest with batches that stay in its caches, a GPU with large ones (measured by
# benchmarks/speed.py: on 2 cores geo slowed sharply above 128, the autoencoders less so).
CPU_BATCH_SIZE, GPU_BATCH_SIZE = 128, 1024


def default_batch_size(device):
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else GPU_BATCH_SIZE


@torch.inference_mode()
def anomaly_scores(model, images, batch_size=None, progress=None, desc=None):
    """Scores for a whole array (memory-mapped is fine: it is read one batch at a time).

    `progress`, when given, is called with the fraction done (the app's progress bar); otherwise a
    tqdm bar is shown in the terminal for large inputs.
    """
    model.eval()
    batch_size = batch_size or default_batch_size(model.device)
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
