"""How well anomaly maps find the defects' pixels: pixel ROC-AUC and AUPRO (overall and per kind of
defect), computed as the field reports them (MVTec AD; Bergmann et al., IJCV 2021)."""

import numpy as np
from scipy import ndimage

from ad.errors import InputError
from ad.data import source_subsets

FPR_LIMIT = 0.3  # the PRO curve is read up to 30% of normal pixels flagged, as MVTec AD's paper and anomalib do
EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)  # pixels touching at a corner belong to one defect region


def check_masks_and_maps(masks, maps):
    """masks bool (N, H, W) and maps of the same shape, finite, as float32 (what the models give)."""
    masks, maps = np.asarray(masks, dtype=bool), np.asarray(maps, dtype=np.float32)
    if masks.ndim != 3 or masks.shape != maps.shape:
        raise InputError(f"masks {masks.shape} and maps {maps.shape}: expected both (N, H, W), the "
                         "same shape: one ground-truth mask per anomaly map")
    if not np.isfinite(maps).all():
        raise InputError("anomaly maps contain NaN or Inf; expected finite scores")
    if masks.all() or not masks.any():
        raise InputError(f"masks: {'every' if masks.all() else 'no'} pixel is a defect; pixel metrics "
                         "need both defect and normal pixels")
    return masks, maps


def region_weights(masks):
    """(weights of the defect pixels, in the order maps[masks] lists them; number of regions): each
    pixel of a defect region (a connected component of one image's mask) weighs 1 / the region's
    size, so that the weights of a region's pixels above a threshold add up to its share above it."""
    weights, regions = [], 0
    for mask in masks:
        labelled, count = ndimage.label(mask, structure=EIGHT_NEIGHBOURS)
        per_region = np.r_[0.0, 1.0 / np.bincount(labelled.reshape(-1), minlength=count + 1)[1:]]
        weights.append(per_region[labelled[mask]])
        regions += count
    return np.concatenate(weights), regions


def flagged_curve(normal_scores, defect_scores, defect_weights):
    """(x, y): the share of normal pixels and the sum of the defect pixels' weights flagged, as the
    threshold falls from above the highest score to below the lowest (a pixel is flagged when it
    scores at least the threshold): the curve through every distinct score, exactly.

    Only defect scores move y, so between two of them the curve is flat; it needs two points per
    distinct defect score d: just above it (every pixel above d flagged) and at it (normal pixels
    scoring d too, flagged together with the defect pixels). Normal scores are only counted, from
    one plain sort of their values, which is many times faster than ordering all pixels.
    """
    normal_scores = np.sort(normal_scores)
    order = np.argsort(defect_scores)[::-1]  # highest first; ties need no stable order: read once per score
    ranked, flagged = defect_scores[order], np.cumsum(defect_weights[order], dtype=np.float64)
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # the last pixel of each score
    thresholds, y_at = ranked[ends], flagged[ends]
    count = len(normal_scores)
    x_above = (count - np.searchsorted(normal_scores, thresholds, side="right")) / count
    x_at = (count - np.searchsorted(normal_scores, thresholds, side="left")) / count
    x = np.r_[0.0, np.column_stack([x_above, x_at]).reshape(-1), 1.0]
    y = np.r_[0.0, np.column_stack([np.r_[0.0, y_at[:-1]], y_at]).reshape(-1), y_at[-1]]
    return x, y


def roc_curve_of_pixels(masks, maps):
    """(false positive rates, true positive rates) of the pixels, from (0, 0) to (1, 1)."""
    masks, maps = check_masks_and_maps(masks, maps)
    defect_scores = maps[masks]
    fpr, true_positives = flagged_curve(maps[~masks], defect_scores, np.ones(len(defect_scores)))
    return fpr, true_positives / len(defect_scores)


def pro_curve(masks, maps):
    """(false positive rates, per-region overlaps): the PRO at a threshold is the mean over all defect
    regions of the share of their pixels flagged; the FPR is the share of all normal pixels flagged."""
    masks, maps = check_masks_and_maps(masks, maps)
    weights, regions = region_weights(masks)
    fpr, overlap = flagged_curve(maps[~masks], maps[masks], weights)
    return fpr, overlap / regions


def area_up_to(x, y, limit):
    """The trapezoid area under y(x) from x = 0 to `limit`, y interpolated linearly at the limit
    (x non-decreasing from 0)."""
    inside = int(np.searchsorted(x, limit, side="right"))  # points with x <= limit
    x_in, y_in = x[:inside], y[:inside]
    if x_in[-1] < limit and inside < len(x):
        y_at = np.interp(limit, x[inside - 1:inside + 1], y[inside - 1:inside + 1])
        x_in, y_in = np.r_[x_in, limit], np.r_[y_in, y_at]
    return float(np.trapezoid(y_in, x_in))


def pixel_roc_auc(masks, maps):
    """ROC-AUC over every pixel of every image (normal images, with empty masks, included): what
    sklearn's roc_auc_score gives on the flattened pixels, exactly, in a fraction of its time."""
    false_positive_rate, true_positive_rate = roc_curve_of_pixels(masks, maps)
    return float(np.trapezoid(true_positive_rate, false_positive_rate))


def pixel_aupro(masks, maps, fpr_limit=FPR_LIMIT):
    """The area under the PRO curve up to `fpr_limit` false positive rate, divided by fpr_limit (so a
    perfect map scores 1): every defect region counts the same, whatever its size."""
    if not 0 < fpr_limit <= 1:
        raise InputError(f"fpr_limit {fpr_limit}: expected a false positive rate in (0, 1]")
    return area_up_to(*pro_curve(masks, maps), fpr_limit) / fpr_limit


def pixel_metrics_by_kind(masks, maps, kinds, labels, fpr_limit=FPR_LIMIT):
    """{'pixel_roc_auc': {'overall': .., '<kind>': ..}, 'pixel_aupro': {..}}: each kind's anomalous
    images with every normal image, as ad.evaluation.metrics_by_source groups image metrics."""
    masks, maps = check_masks_and_maps(masks, maps)
    subsets = source_subsets(labels, kinds).items()
    return {"pixel_roc_auc": {name: pixel_roc_auc(masks[keep], maps[keep]) for name, keep in subsets},
            "pixel_aupro": {name: pixel_aupro(masks[keep], maps[keep], fpr_limit) for name, keep in subsets}}
