"""Pictures for people: upscaled images, heat maps on each model's fixed scale, overlays, legend, plots."""

import functools
from typing import NamedTuple

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ad.training import calibration_warning

matplotlib.use("Agg")  # no screen on a server
import matplotlib.pyplot as plt  # noqa: E402

DISPLAY_SIZE = 256  # 32 or 64 px thumbnails are unreadable; whole-number scaling keeps pixels crisp
VERDICT_COLOURS = {"anomalous": "#b91c1c", "normal": "#15803d"}  # red and green, dark enough on white
SHEET_CELL = 128  # px: the height of a row of pictures in Compare's sheet
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


REGION_COLOUR = (0, 229, 255)  # cyan: clear against the heat map's black-red-yellow and on grey parts


def outlined(picture, region):
    """The defect region's outline drawn on an upscaled picture (region: (S, S) bool, or None)."""
    if region is None or not region.any():
        return picture
    factor = picture.shape[0] // region.shape[0]
    big = region.repeat(factor, axis=0).repeat(factor, axis=1)
    edge = big & ~ndimage.binary_erosion(big, iterations=max(1, factor // 2), border_value=0)
    drawn = picture.copy()
    drawn[edge] = REGION_COLOUR
    return drawn


def defect_picture(image, pixels, full_scale, mask):
    """An image (S, S, 3) under its heat map (pixels (S, S) in the model's unit, drawn on its fixed
    scale), with the true defect (mask (S, S) bool) outlined."""
    heat = np.clip(np.nan_to_num(np.asarray(pixels, dtype=np.float32) / full_scale, posinf=1), 0, 1)
    return outlined(overlay(upscale(np.asarray(image)), heat_map(heat)), mask)


def region_sentence(region, threshold_percentile):
    """What the outline on the overlay means, in one line."""
    if region is None:
        return ('<div style="color:#555">No defect region: this checkpoint has no pixel calibration '
                "(`python -m ad calibrate` adds it).</div>")
    if not region.any():
        return (f'<div>No defect region: no pixel is above the {ordinal(threshold_percentile)} percentile '
                "of normal images' highest pixels.</div>")
    return (f'<div>Defect region (outlined in cyan on the overlay): <b>{region.mean():.1%}</b> of the image, '
            f"the pixels above the {ordinal(threshold_percentile)} percentile of normal images' highest pixels.</div>")


class Pictures(NamedTuple):
    """What one model shows of one image, upscaled: uint8 (H, W, 3) each."""

    input: np.ndarray  # the image as the model reads it (its crop, at its size)
    picture: np.ndarray  # the model's own picture (model.picture_label); geo's is a grid of views
    heat: np.ndarray  # the heat map on the model's fixed scale
    overlay: np.ndarray  # the heat map over the input


def heat_overlay(detection):
    """Only the overlay of one Detection: what a threshold move redraws (with its region outlined)."""
    return overlay(model_view(detection.input), heat_map(detection.heat))


def pictures(detection):
    """The pictures of one ad.scoring.Detection."""
    seen, heat = model_view(detection.input), heat_map(detection.heat)
    return Pictures(seen, model_view(detection.picture), heat, overlay(seen, heat))


def legend(model):
    """The heat map's colour bar in the model's own unit."""
    return _legend(model.heat_full_scale, model.heat_unit)


@functools.cache
def _legend(full_scale, unit):
    figure, axis = plt.subplots(figsize=(4.6, 0.95), dpi=100)
    axis.imshow(np.linspace(0, 1, 256)[None], aspect="auto", cmap=COLORMAP, extent=(0, full_scale, 0, 1))
    axis.set_yticks([])
    ticks = np.linspace(0, full_scale, 5)
    axis.set_xticks(ticks, [f"{t:.3g}" for t in ticks[:-1]] + [f"{full_scale:.3g} or more"])
    axis.set_xlabel(unit, fontsize=8)
    axis.tick_params(labelsize=8)
    figure.tight_layout()
    figure.canvas.draw()
    picture = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return picture


def curves_figure(curves):
    """curves: {name: (fpr, tpr, auc, recall, precision, ap)} -> ROC and precision-recall side by side."""
    figure, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.6), dpi=100)
    for name, (fpr, tpr, auc, recall, precision, ap) in curves.items():
        roc.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})", linewidth=1.6)
        pr.plot(recall, precision, label=f"{name} (AP {ap:.3f})", linewidth=1.6)
    roc.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="chance")
    roc.set(xlabel="false positive rate (normal images flagged)", ylabel="true positive rate (anomalies caught)",
            xlim=(0, 1), ylim=(0, 1.01), title="ROC curves")
    pr.set(xlabel="recall (anomalies caught)", ylabel="precision (flagged images that are anomalous)",
           xlim=(0, 1), ylim=(0, 1.01), title="Precision-recall curves")
    for axis in (roc, pr):
        axis.legend(loc="lower right" if axis is roc else "lower left", fontsize=8)
    figure.tight_layout()
    plt.close(figure)
    return figure


def histogram_figure(scores_by_model, labels, thresholds):
    """Score histograms, one panel per model (normal vs anomalous when labelled), the threshold drawn.
    Drawn again on every move of the threshold slider: counts by numpy, a fixed layout (no
    tight_layout), so 20,000 images and six models take a fraction of a second."""
    count = len(scores_by_model)
    columns = min(count, 3)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.3 * rows), dpi=80, squeeze=False)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.12 / rows, top=1 - 0.08 / rows, wspace=0.25,
                           hspace=0.45)
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    groups = [("all images", "tab:blue", None)] if labels is None else [
        ("normal", "tab:green", labels == 0), ("anomalous", "tab:red", labels == 1)]
    for axis, (name, scores) in zip(axes.flat, scores_by_model.items()):
        bins = np.histogram_bin_edges(np.r_[scores, thresholds[name]], bins=40)
        for label, colour, keep in groups:
            counts, _ = np.histogram(scores if keep is None else scores[keep], bins=bins)
            axis.stairs(counts, bins, fill=True, alpha=0.55, color=colour, label=label)
        axis.axvline(thresholds[name], color="black", linestyle="--", linewidth=1.5, label="threshold")
        axis.set_title(f"{name}: threshold {thresholds[name]:.4g}", fontsize=10)
        axis.set_xlabel("anomaly score", fontsize=9)
        axis.tick_params(labelsize=8)
    axes[0][0].legend(fontsize=8)  # one legend: the colours are the same in every panel
    axes[0][0].set_ylabel("images", fontsize=9)
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


def percent(percentile, threshold=None):
    """A percentile as a number to read ("99.2") that never rounds to 0 or 100 unless it is one, nor
    across the threshold: an image above the 99th percentile never reads "99.0"."""
    if percentile >= 100 or percentile <= 0:
        return "100" if percentile >= 100 else "0"

    def agrees(text):
        shown = float(text)
        return 0 < shown < 100 and (threshold is None or (shown > threshold) == (percentile > threshold))
    digits = 1
    while not agrees(f"{percentile:.{digits}f}") and digits < 6:
        digits += 1
    return f"{percentile:.{digits}f}"


def ordinal(percentile):
    """99 -> "99th", 91 -> "91st", 99.5 -> "99.5th"."""
    text = f"{percentile:g}"
    if "." in text or int(text) % 100 in (11, 12, 13):
        return text + "th"
    return text + {"1": "st", "2": "nd", "3": "rd"}.get(text[-1], "th")


def verdict_html(name, verdict, score, percentile, threshold_percentile, calibration_images=None):
    """The verdict as anyone reads it: a coloured label and one plain sentence whose figures agree
    with it; then how many normal images placed the threshold, with a warning when too few."""
    colour, unusual = VERDICT_COLOURS[verdict], percent(percentile, threshold_percentile)
    sentence = {"0": f"As usual as the most typical normal images {name} was checked against",
                "100": f"More unusual than every normal image {name} was checked against"}.get(
        unusual, f"More unusual than {unusual}% of the normal images {name} was checked against")
    warning = calibration_warning(calibration_images, threshold_percentile)
    checked = (f" The threshold comes from {calibration_images:,} held-out normal images."
               if calibration_images and not warning else "")
    warning = (f'<div style="margin-top:4px;color:#92400e"><b>Few normal images:</b> {name} was {warning}.</div>'
               if warning else "")
    return (f'<div class="verdict" style="border-left:6px solid {colour};padding:6px 12px">'
            f'<div style="font-size:1.6em;font-weight:700;color:{colour}">{verdict.upper()}</div>'
            f"<div>{sentence} (anomaly score {score:.4g}; the threshold is the {ordinal(threshold_percentile)} "
            f"percentile of their scores).{checked}</div>{warning}</div>")


def normal_scores_chart(quantiles, score, threshold, verdict):
    """Where one score falls among the held-out normal scores, with the threshold marked. The normal
    scores' density comes from the stored quantiles: equal shares of images between neighbours."""
    quantiles = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0, 100, len(quantiles))
    edges = np.interp(np.linspace(0, 99.5, 41), levels, quantiles)  # 40 bins of equal mass; the top 0.5% left out
    low, high = min(edges[0], score), max(edges[-1], score, threshold)
    widths = np.maximum(np.diff(edges), (high - low) / 400)  # tied scores: a narrow bar, not an infinite one
    figure, axis = plt.subplots(figsize=(5.2, 1.8), dpi=90)
    axis.stairs(1 / widths, edges, fill=True, color="tab:green", alpha=0.35, label="normal images")
    axis.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label="threshold")
    axis.axvline(score, color=VERDICT_COLOURS[verdict], linewidth=2.5, label="this image")
    axis.set_xlim(low - 0.02 * (high - low), high + 0.04 * (high - low))
    axis.set_yticks([])
    axis.set_xlabel("anomaly score", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.legend(fontsize=7, loc="upper right", framealpha=0.9)
    figure.subplots_adjust(left=0.03, right=0.97, bottom=0.27, top=0.95)
    plt.close(figure)
    return figure


def compare_sheet(rows):
    """rows: [(caption, pictures)], every row's pictures in the same order of columns -> one picture
    with a row per model, so that every model is in view at once (a gallery scrolls inside its box).
    Each picture is fitted to the row's height, keeping its shape; a column is as wide as its widest."""
    cell, gap, caption_height, margin = SHEET_CELL, 6, 22, 34  # the margin keeps the page's label off the first row

    def fit(picture):
        image = Image.fromarray(picture)
        return image.resize((max(1, round(cell * image.width / image.height)), cell), Image.Resampling.NEAREST)

    tiles = [(caption, [fit(p) for p in pictures]) for caption, pictures in rows]
    widths = [max(row[c].width for _, row in tiles) for c in range(len(tiles[0][1]))]
    height = margin + len(rows) * (cell + caption_height + gap)
    sheet = Image.new("RGB", (sum(widths) + (len(widths) - 1) * gap, height), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=15)
    for r, (caption, row) in enumerate(tiles):
        top = margin + r * (cell + caption_height + gap)
        draw.text((2, top + 2), caption, fill="black", font=font)
        for c, tile in enumerate(row):
            sheet.paste(tile, (sum(widths[:c]) + c * gap, top + caption_height))
    return np.asarray(sheet)
