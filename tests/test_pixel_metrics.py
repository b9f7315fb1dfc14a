"""Pixel ROC-AUC and AUPRO: a hand-computed example, sklearn and a threshold-by-threshold reference."""

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from ad.errors import InputError
from ad.pixel_metrics import pixel_aupro, pixel_metrics_by_kind, pixel_roc_auc, pro_curve


def tiny_example():
    """Two 4x4 images, one defect region each; 28 normal pixels.

    image 0: region A = (0, 0) 0.9 and (0, 1) 0.5; normal pixels (1, 1) 0.8 and (2, 2) 0.5 (a tie
             with a defect pixel), the rest 0.
    image 1: region B = (2, 2) 0.7 and (3, 3) 0.2, touching at a corner only: one region with
             8-connectivity (two with 4-connectivity); normal pixel (0, 0) 0.6, the rest 0.
    """
    masks, maps = np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), np.float32)
    masks[0, 0, 0] = masks[0, 0, 1] = masks[1, 2, 2] = masks[1, 3, 3] = True
    maps[0, 0, 0], maps[0, 0, 1], maps[0, 1, 1], maps[0, 2, 2] = 0.9, 0.5, 0.8, 0.5
    maps[1, 2, 2], maps[1, 3, 3], maps[1, 0, 0] = 0.7, 0.2, 0.6
    return masks, maps


# Flagging every pixel scoring at least t, from the top (FP of 28 normal pixels, TP of 4 defect ones,
# PRO = mean of A's and B's shares flagged):
#   t = 0.9: FP 0, TP 1, PRO (1/2 + 0)/2 = 0.25
#   t = 0.8: FP 1, TP 1, PRO 0.25
#   t = 0.7: FP 1, TP 2, PRO (1/2 + 1/2)/2 = 0.5
#   t = 0.6: FP 2, TP 2, PRO 0.5
#   t = 0.5: FP 3, TP 3, PRO (1 + 1/2)/2 = 0.75  (the tie: a normal and a defect pixel flagged together)
#   t = 0.2: FP 3, TP 4, PRO 1
#   t = 0  : FP 28, TP 4, PRO 1
HAND_FPR = np.array([0, 0, 1, 1, 2, 3, 3, 28]) / 28
HAND_PRO = np.array([0, 0.25, 0.25, 0.5, 0.5, 0.75, 1, 1])


def test_pixel_roc_auc_matches_the_hand_computation():
    # trapezoids under TPR(FPR): 1/28 * (0.25 + 0.5 + (0.5 + 0.75)/2) + 25/28 * 1 = 26.375 / 28;
    # as pairs: each defect pixel's normals below it (ties count half): (28 + 27 + 25.5 + 25) / (4 * 28)
    masks, maps = tiny_example()
    assert pixel_roc_auc(masks, maps) == pytest.approx(26.375 / 28, abs=1e-12)
    assert pixel_roc_auc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)


def test_pro_curve_and_aupro_match_the_hand_computation():
    masks, maps = tiny_example()
    for limit in np.linspace(0.01, 1, 34):  # the same curve as the hand's: the same area up to anywhere
        assert pixel_aupro(masks, maps, fpr_limit=limit) * limit == pytest.approx(
            reference_area(HAND_FPR, HAND_PRO, limit), abs=1e-12)
    # up to FPR 0.3 (8.4 normal pixels): the segments from FPR 0 to 3/28 give (0.25 + 0.5 + 0.625) / 28,
    # then PRO stays 1 up to the limit: 0.3 - 3/28; the area divided by 0.3
    assert pixel_aupro(masks, maps) == pytest.approx((1.375 / 28 + 0.3 - 3 / 28) / 0.3, abs=1e-12)
    # a limit inside the tie's diagonal segment, FPR 2/28 -> 3/28, PRO 0.5 -> 0.75: interpolated at
    # 2.5/28 to PRO 0.625; area 0.25/28 + 0.5/28 + 0.5/28 * (0.5 + 0.625)/2 = 1.03125/28, over 2.5/28
    assert pixel_aupro(masks, maps, fpr_limit=2.5 / 28) == pytest.approx(1.03125 / 2.5, abs=1e-12)


def test_regions_are_eight_connected():
    # B's pixels touch at a corner: one region, so at t = 0.9 (no normal pixel flagged yet) the PRO is
    # (1/2 + 0) / 2 = 0.25; with B split in two (4-connectivity) it would be (1/2 + 0 + 0) / 3
    masks, maps = tiny_example()
    fpr, pro = pro_curve(masks, maps)
    assert pro[fpr == 0].max() == pytest.approx(0.25)


def reference_curve(masks, maps):
    """The PRO curve threshold by threshold, straight from the definition (slow; tests only)."""
    regions = []
    for i, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(i, labelled == k) for k in range(1, count + 1)]
    fpr, pro = [0.0], [0.0]
    for threshold in np.unique(maps)[::-1]:
        flagged = maps >= threshold
        fpr.append(flagged[~masks].mean())
        pro.append(np.mean([flagged[i][region].mean() for i, region in regions]))
    return np.array(fpr), np.array(pro)


def reference_area(x, y, limit):
    """Trapezoids segment by segment, the last one cut at the limit."""
    area = 0.0
    for x0, x1, y0, y1 in zip(x[:-1], x[1:], y[:-1], y[1:]):
        if x0 >= limit:
            break
        end = min(x1, limit)
        y_end = y1 if end == x1 else y0 + (y1 - y0) * (end - x0) / (x1 - x0)
        area += (end - x0) * (y0 + y_end) / 2
    return area


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aupro_matches_the_threshold_by_threshold_definition(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((6, 12, 12)) < 0.08  # scattered pixels: many regions, some touching at corners
    masks[0] = False  # a normal image
    maps = np.round(rng.random((6, 12, 12)) + masks * 0.4, 1).astype(np.float32)  # ties between both kinds
    for limit in (0.3, 0.05, 1.0):
        expected = reference_area(*reference_curve(masks, maps), limit) / limit
        assert pixel_aupro(masks, maps, fpr_limit=limit) == pytest.approx(expected, abs=1e-9)
    assert pixel_roc_auc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-9)


def test_a_perfect_map_scores_one_and_a_random_one_chance():
    rng = np.random.default_rng(0)
    masks = np.zeros((20, 64, 64), bool)
    for i in range(10):
        top, left = rng.integers(0, 48, 2)
        masks[i, top:top + rng.integers(4, 16), left:left + rng.integers(4, 16)] = True
    perfect = masks.astype(np.float32)
    assert pixel_roc_auc(masks, perfect) == 1.0
    assert pixel_aupro(masks, perfect) == pytest.approx(1.0)
    random = rng.random(masks.shape)
    assert pixel_roc_auc(masks, random) == pytest.approx(0.5, abs=0.03)
    assert pixel_aupro(masks, random) == pytest.approx(0.15, abs=0.03)  # PRO = FPR: 0.3^2 / 2 / 0.3


def test_metrics_by_kind_have_metric_first_and_each_kind_with_every_normal_image():
    rng = np.random.default_rng(1)
    masks = np.zeros((6, 8, 8), bool)
    masks[2, 1:4, 1:4] = masks[3, 5:7, 2:6] = masks[4, 0:2, 0:2] = masks[5, 3:8, 3:5] = True
    maps = rng.random(masks.shape).astype(np.float32) + masks * rng.uniform(0, 1, (6, 1, 1))
    labels = np.array([0, 0, 1, 1, 1, 1])
    kinds = np.array(["good", "good", "crack", "crack", "hole", "hole"])
    metrics = pixel_metrics_by_kind(masks, maps, kinds, labels)
    assert list(metrics) == ["pixel_roc_auc", "pixel_aupro"]
    assert all(list(by_kind) == ["overall", "crack", "hole"] for by_kind in metrics.values())
    crack = [0, 1, 2, 3]
    assert metrics["pixel_roc_auc"]["crack"] == pixel_roc_auc(masks[crack], maps[crack])
    assert metrics["pixel_aupro"]["hole"] == pixel_aupro(masks[[0, 1, 4, 5]], maps[[0, 1, 4, 5]])
    assert metrics["pixel_aupro"]["overall"] == pixel_aupro(masks, maps)


def test_bad_inputs_are_refused():
    masks, maps = tiny_example()
    with pytest.raises(InputError, match="same shape"):
        pixel_roc_auc(masks, maps[:, :3])
    with pytest.raises(InputError, match="no pixel is a defect"):
        pixel_aupro(np.zeros_like(masks), maps)
    with pytest.raises(InputError, match="NaN"):
        pixel_roc_auc(masks, np.full(maps.shape, np.nan))
    with pytest.raises(InputError, match="fpr_limit"):
        pixel_aupro(masks, maps, fpr_limit=0)
