"""How well scores separate anomalies: ranking metrics (overall and per anomaly source), metrics at a
threshold, the errors at it, agreement between models, and the CSVs people take away."""

import csv
import io
from typing import NamedTuple

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from ad.data import check_two_classes, source_subsets
from ad.pixel_metrics import pixel_metrics_by_kind
from ad.files import write_text

FALSE_POSITIVE_RATES = (0.01, 0.05)  # "how many anomalies are caught if 1% (5%) of normal images are flagged"


class Metric(NamedTuple):
    title: str  # in words: the model card's
    column: str  # a table column's: the app's and the command line's
    needs_masks: bool = False  # a pixel metric: only test sets with defect masks have it


# Every metric's name, said once: metrics.json's keys, the model card, `python -m ad evaluate`'s
# table and the app's Evaluate table all read it, in this order.
METRICS = {
    "roc_auc": Metric("ROC-AUC", "ROC-AUC"),
    "average_precision": Metric("average precision", "average precision"),
    "tpr_at_1%_fpr": Metric("anomalies caught at 1% false positives", "caught at 1% FPR"),
    "tpr_at_5%_fpr": Metric("anomalies caught at 5% false positives", "caught at 5% FPR"),
    # with defect masks: is the heat map on the defect's pixels, and is every defect region found?
    "pixel_roc_auc": Metric("pixel ROC-AUC (defect pixels above normal pixels)", "pixel ROC-AUC", True),
    "pixel_aupro": Metric("pixel AUPRO (share of each defect found, up to 30% normal pixels flagged)",
                          "pixel AUPRO", True),
}


def roc_auc(labels, scores):
    check_two_classes(labels)
    return float(roc_auc_score(labels, scores))


def tpr_at_fpr(labels, scores, false_positive_rate):
    """The share of anomalies caught while at most this share of normal images is flagged."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= false_positive_rate].max())


def ranking_metrics(labels, scores):
    """Threshold-free metrics: how well the scores put anomalies above normal images."""
    check_two_classes(labels)
    metrics = {"roc_auc": float(roc_auc_score(labels, scores)),
               "average_precision": float(average_precision_score(labels, scores))}
    for rate in FALSE_POSITIVE_RATES:
        metrics[tpr_key(rate)] = tpr_at_fpr(labels, scores, rate)
    return metrics


def tpr_key(false_positive_rate):
    """The METRICS key of the anomalies caught at this false positive rate: 0.01 -> 'tpr_at_1%_fpr'."""
    return f"tpr_at_{false_positive_rate:.0%}_fpr"




def metrics_by_source(labels, scores, sources=None):
    """{'roc_auc': {'overall': .., '<source>': ..}, 'average_precision': {..}, ...}: metric first, so
    that `metrics.json`'s `roc_auc` reads the same as before."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    by_subset = {name: ranking_metrics(labels[keep], scores[keep])
                 for name, keep in source_subsets(labels, sources).items()}
    return {metric: {name: values[metric] for name, values in by_subset.items()}
            for metric in by_subset["overall"]}


def test_metrics(test_set, scores, maps=None):
    """Every metric a labelled test set allows, overall and per kind: image metrics, and pixel
    metrics when the set has defect masks and `maps` (N, S, S) are the models' per-pixel scores."""
    metrics = metrics_by_source(test_set.labels, scores, test_set.sources)
    if test_set.masks is not None and maps is not None:
        metrics |= pixel_metrics_by_kind(test_set.masks, maps, test_set.sources, test_set.labels)
    return metrics


def auc_by_source(labels, scores, sources=None):
    """{'overall': auc, '<source>': auc of all normal images vs that source's anomalies, ...}."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    return {name: roc_auc(labels[keep], scores[keep]) for name, keep in source_subsets(labels, sources).items()}


def at_threshold(labels, scores, threshold):
    """Precision, recall, F1, false positive rate and the confusion counts when every image scoring
    above `threshold` is called anomalous (the app's verdict)."""
    labels, flagged = np.asarray(labels) == 1, np.asarray(scores) > threshold
    tp, fp = int((flagged & labels).sum()), int((flagged & ~labels).sum())
    fn, tn = int((~flagged & labels).sum()), int((~flagged & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0,
            "true_positives": tp, "false_positives": fp, "true_negatives": tn, "false_negatives": fn}


def verdicts_at(scores, threshold):
    """The verdict of each score: anomalous above the threshold (ad.scoring.verdict's rule)."""
    return ["anomalous" if s > threshold else "normal" for s in np.asarray(scores)]


def best_f1_threshold(labels, scores):
    """(threshold, F1): the threshold whose verdicts (score > threshold) have the best F1 on these labels."""
    check_two_classes(labels)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    ranked, is_anomaly = scores[order], np.asarray(labels)[order] == 1
    caught, flagged = np.cumsum(is_anomaly), np.arange(1, len(scores) + 1)
    f1 = 2 * caught / (flagged + is_anomaly.sum())  # = 2PR / (P + R)
    cuts = np.flatnonzero(np.r_[ranked[:-1] > ranked[1:], True])  # flag the top i+1: ties stay together
    best = cuts[np.argmax(f1[cuts])]
    threshold = ranked[best + 1] if best + 1 < len(ranked) else np.nextafter(ranked[-1], -np.inf)
    return float(threshold), float(f1[best])


def errors_at(labels, scores, threshold):
    """(false positives, false negatives) as indices, worst first: the normal images scoring highest
    above the threshold, and the anomalies scoring lowest below it."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    false_positives = np.flatnonzero((labels == 0) & (scores > threshold))
    false_negatives = np.flatnonzero((labels == 1) & (scores <= threshold))
    return (false_positives[np.argsort(-scores[false_positives], kind="stable")],
            false_negatives[np.argsort(scores[false_negatives], kind="stable")])


def roc_points(labels, scores):
    false_positive_rate, true_positive_rate, _ = roc_curve(labels, scores)
    return false_positive_rate, true_positive_rate


def precision_recall_points(labels, scores):
    precision, recall, _ = precision_recall_curve(labels, scores)
    return recall, precision


def rank_average(score_lists):
    """Ensemble by mean rank (0..1): scores on different scales become comparable."""
    ranks = [(rankdata(s) - 1) / max(len(s) - 1, 1) for s in score_lists]  # ties share a rank
    return np.mean(ranks, axis=0)


def rank_correlations(scores_by_model):
    """Spearman's rank correlation between every pair of models' scores, as a square matrix."""
    ranks = np.array([rankdata(s) for s in scores_by_model.values()])
    return np.atleast_2d(np.corrcoef(ranks)) if len(ranks) > 1 else np.ones((1, 1))


def submission_csv(scores):
    """HW8's Kaggle format: header `ID,score`, one row per image in input order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ID", "score"])
    writer.writerows((i, repr(float(s))) for i, s in enumerate(scores))
    return out.getvalue()


def write_submission(path, scores):
    write_text(path, submission_csv(scores))


def details_csv(names, scores, percentiles, verdicts, labels=None, sources=None):
    """Every image with its file name, score, percentile among normal images and verdict (and its
    label and source when known), in input order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    known = [c for c, v in (("label", labels), ("source", sources)) if v is not None]
    writer.writerow(["ID", "file", "score", "percentile", "verdict", *known])
    for i, name in enumerate(names):
        extra = ([] if labels is None else [int(labels[i])]) + ([] if sources is None else [str(sources[i])])
        writer.writerow([i, name, repr(float(scores[i])), f"{percentiles[i]:.3f}", verdicts[i], *extra])
    return out.getvalue()


def format_table(results_by_model):
    """{'cnn': {'overall': .9, 'UTKFace': .8}} -> a plain text table, one row per model."""
    columns = list(dict.fromkeys(k for r in results_by_model.values() for k in r))  # in the order given
    width = max(8, *(len(m) for m in results_by_model))
    widths = [max(9, len(c)) for c in columns]
    lines = [f"{'model':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths))]
    for name, results in results_by_model.items():
        lines.append(f"{name:<{width}}  " + "  ".join(
            _cell(results.get(c), w) for c, w in zip(columns, widths)))
    return "\n".join(lines)


def _cell(value, width):
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>{width}d}" if isinstance(value, int) else f"{value:>{width}.4f}"
