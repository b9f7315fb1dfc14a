"""ROC-AUC overall and per anomaly source, ROC curves, and HW8's Kaggle submission CSV."""

import csv
import io

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

from ad.data import check_two_classes
from ad.files import write_text


def roc_auc(labels, scores):
    check_two_classes(labels)
    return float(roc_auc_score(labels, scores))


def auc_by_source(labels, scores, sources=None):
    """{'overall': auc, '<source>': auc of all normal images vs that source's anomalies, ...}."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    results = {"overall": roc_auc(labels, scores)}
    if sources is None:
        return results
    sources = np.asarray(sources)
    normal = labels == 0
    for source in sorted(np.unique(sources[~normal]).tolist(), key=str):
        subset = normal | ((sources == source) & ~normal)
        results[str(source)] = float(roc_auc_score(labels[subset], scores[subset]))
    return results


def roc_points(labels, scores):
    false_positive_rate, true_positive_rate, _ = roc_curve(labels, scores)
    return false_positive_rate, true_positive_rate


def rank_average(score_lists):
    """Ensemble by mean rank (0..1): scores on different scales become comparable."""
    ranks = [(rankdata(s) - 1) / max(len(s) - 1, 1) for s in score_lists]  # ties share a rank
    return np.mean(ranks, axis=0)


def submission_csv(scores):
    """HW8's Kaggle format: header `ID,score`, one row per image in input order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ID", "score"])
    writer.writerows((i, repr(float(s))) for i, s in enumerate(scores))
    return out.getvalue()


def write_submission(path, scores):
    write_text(path, submission_csv(scores))


def format_table(results_by_model):
    """{'cnn': {'overall': .9, '1': .8}} -> a plain text table, one row per model."""
    columns = sorted({k for r in results_by_model.values() for k in r}, key=lambda k: (k != "overall", k))
    width = max(8, *(len(m) for m in results_by_model))
    lines = [f"{'model':<{width}}  " + "  ".join(f"{c if c == 'overall' else 'src ' + c:>9}"
                                                   for c in columns)]
    for name, results in results_by_model.items():
        lines.append(f"{name:<{width}}  " + "  ".join(
            f"{results[c]:>9.4f}" if c in results else f"{'-':>9}" for c in columns))
    return "\n".join(lines)
