"""Pictures for people: upscaled images, heat maps on each model's fixed scale, overlays, legend, plots."""

import functools

import matplotlib
import numpy as np
from PIL import Image

matplotlib.use("Agg")  # no screen on a server
import matplotlib.pyplot as plt  # noqa: E402

DISPLAY_SIZE = 256  # 32 or 64 px thumbnails are unreadable; whole-number scaling keeps pixels crisp
COLORMAP = "inferno"  # perceptually uniform, readable in grey and by colour-blind users


@functools.cache
def _lut():
    return (matplotlib.colormaps[COLORMAP](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def to_uint8_image(x):
    """float (3, H, W) in [-1, 1] -> uint8 (H, W, 3) for display."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def upscale(image_uint8):
    height, width = image_uint8.shape[:2]
    factor = max(1, DISPLAY_SIZE // height)
    return np.asarray(Image.fromarray(image_uint8).resize((width * factor, height * factor),
                                                          Image.Resampling.NEAREST))


def model_view(x):
    """(3, H, W) tensor in [-1, 1] -> upscaled uint8 picture."""
    return upscale(to_uint8_image(x))


def heat_map(heat):
    """(H, W) values in [0, 1] (the model's fixed scale) -> upscaled colour picture."""
    index = np.clip(np.asarray(heat, dtype=np.float32) * 255, 0, 255).astype(np.uint8)
    return upscale(_lut()[index])


def overlay(base_uint8, heat_uint8, alpha=0.55):
    blended = (1 - alpha) * base_uint8.astype(np.float32) + alpha * heat_uint8.astype(np.float32)
    return blended.round().astype(np.uint8)


def pictures(detection):
    """Detect's four pictures for one ad.scoring.Detection: input, the model's picture, heat map, overlay."""
    seen, heat = model_view(detection.input), heat_map(detection.heat)
    return seen, model_view(detection.picture), heat, overlay(seen, heat)


def legend(model):
    """The heat map's colour bar in the model's own unit."""
    return _legend(model.heat_full_scale, model.heat_unit)


@functools.cache
def _legend(full_scale, unit):
    figure, axis = plt.subplots(figsize=(4.6, 0.95), dpi=100)
    axis.imshow(np.linspace(0, 1, 256)[None], aspect="auto", cmap=COLORMAP, extent=(0, full_scale, 0, 1))
    axis.set_yticks([])
    ticks = np.linspace(0, full_scale, 5)
    axis.set_xticks(ticks, [f"{t:g}" for t in ticks[:-1]] + [f"{full_scale:g} or more"])
    axis.set_xlabel(unit, fontsize=8)
    axis.tick_params(labelsize=8)
    figure.tight_layout()
    figure.canvas.draw()
    picture = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return picture


def roc_figure(curves):
    """curves: {name: (false positive rates, true positive rates, auc)} -> one matplotlib figure."""
    figure, axis = plt.subplots(figsize=(5.5, 5), dpi=100)
    for name, (fpr, tpr, auc) in curves.items():
        axis.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", linewidth=1.6)
    axis.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="chance")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
             title="ROC curves")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    plt.close(figure)
    return figure


def histogram_figure(scores_by_model, labels):
    """Normal vs anomalous score histograms, one panel per model."""
    count = len(scores_by_model)
    figure, axes = plt.subplots(1, count, figsize=(3.2 * count, 2.8), dpi=100, squeeze=False)
    for axis, (name, scores) in zip(axes[0], scores_by_model.items()):
        bins = np.histogram_bin_edges(scores, bins=30)
        axis.hist(scores[labels == 0], bins=bins, alpha=0.6, label="normal")
        axis.hist(scores[labels == 1], bins=bins, alpha=0.6, label="anomaly")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("anomaly score", fontsize=8)
        axis.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    plt.close(figure)
    return figure


def loss_figure(history):
    """Training and held-out loss per epoch, as training goes."""
    figure, axis = plt.subplots(figsize=(5.5, 3), dpi=100)
    epochs = [r["epoch"] for r in history]
    axis.plot(epochs, [r["train_loss"] for r in history], "o-", label="training")
    axis.plot(epochs, [r["held_out_loss"] for r in history], "o-", label="held-out normal images")
    axis.set(xlabel="epoch", ylabel="loss", title="Loss")
    axis.legend(fontsize=8)
    figure.tight_layout()
    plt.close(figure)
    return figure
