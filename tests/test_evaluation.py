"""ad.evaluation: ROC-AUC overall and per source, ensembles, the submission CSV."""

import csv

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import (average_precision_score, confusion_matrix, f1_score, precision_recall_curve,
                             precision_score, recall_score, roc_auc_score, roc_curve)

from ad import InputError
from ad.evaluation import (FALSE_POSITIVE_RATES, METRICS, at_threshold, auc_by_source, best_f1_threshold,
                           details_csv, errors_at, format_table, metrics_by_source, rank_average, rank_correlations,
                           submission_csv, tpr_at_fpr, tpr_key, write_submission)


@pytest.fixture
def scored():
    """Scores that separate two kinds of anomaly differently, with ties, as real scores have."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * 300 + [1] * 100)
    sources = np.array(["CelebA"] * 300 + ["UTKFace"] * 50 + ["CIFAR-10"] * 50)
    scores = (rng.normal(size=400) + labels * np.where(sources == "CIFAR-10", 2.5, 0.7)).round(1)
    return labels, scores, sources


def test_metrics_match_sklearn_overall_and_per_source(scored):
    labels, scores, sources = scored
    metrics = metrics_by_source(labels, scores, sources)
    assert set(metrics["roc_auc"]) == {"overall", "UTKFace", "CIFAR-10"}
    for subset, keep in (("overall", slice(None)), ("CIFAR-10", sources != "UTKFace")):
        assert metrics["roc_auc"][subset] == pytest.approx(roc_auc_score(labels[keep], scores[keep]))
        assert metrics["average_precision"][subset] == pytest.approx(
            average_precision_score(labels[keep], scores[keep]))
    fpr, tpr, _ = roc_curve(labels, scores)
    for rate in FALSE_POSITIVE_RATES:
        assert metrics[tpr_key(rate)]["overall"] == pytest.approx(max(t for f, t in zip(fpr, tpr) if f <= rate))
    assert tpr_at_fpr(labels, scores, 0.01) <= metrics[tpr_key(0.05)]["overall"]
    assert metrics["roc_auc"]["CIFAR-10"] > metrics["roc_auc"]["UTKFace"]
    assert set(metrics) <= set(METRICS)  # every metric has its title and column


@pytest.mark.parametrize("threshold", [-1.0, 0.5, 1.0, 3.0])
def test_threshold_metrics_match_sklearn(scored, threshold):
    labels, scores, _ = scored
    predicted = (scores > threshold).astype(int)
    m = at_threshold(labels, scores, threshold)
    assert m["precision"] == pytest.approx(precision_score(labels, predicted, zero_division=0))
    assert m["recall"] == pytest.approx(recall_score(labels, predicted))
    assert m["f1"] == pytest.approx(f1_score(labels, predicted, zero_division=0))
    (tn, fp), (fn, tp) = confusion_matrix(labels, predicted)
    assert (m["true_negatives"], m["false_positives"], m["false_negatives"], m["true_positives"]) == (tn, fp, fn, tp)
    assert m["false_positive_rate"] == pytest.approx(fp / (fp + tn))


def test_best_f1_threshold_is_the_best_cut_of_the_precision_recall_curve(scored):
    labels, scores, _ = scored
    threshold, f1 = best_f1_threshold(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    best = np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12))
    assert f1 == pytest.approx(best)
    assert at_threshold(labels, scores, threshold)["f1"] == pytest.approx(f1)  # the verdicts it stands for


def test_errors_at_a_threshold_are_exactly_the_false_positives_and_negatives_worst_first(scored):
    labels, scores, _ = scored
    false_positives, false_negatives = errors_at(labels, scores, 0.8)
    assert set(false_positives) == set(np.flatnonzero((labels == 0) & (scores > 0.8)))
    assert set(false_negatives) == set(np.flatnonzero((labels == 1) & (scores <= 0.8)))
    assert list(scores[false_positives]) == sorted(scores[false_positives], reverse=True)
    assert list(scores[false_negatives]) == sorted(scores[false_negatives])
    m = at_threshold(labels, scores, 0.8)
    assert (len(false_positives), len(false_negatives)) == (m["false_positives"], m["false_negatives"])


def test_rank_correlations_are_spearmans(scored):
    _, scores, _ = scored
    other = scores ** 3 + np.random.default_rng(1).normal(size=len(scores))
    matrix = rank_correlations({"a": scores, "b": other, "c": -scores})
    assert matrix[0, 1] == pytest.approx(spearmanr(scores, other).statistic)
    assert matrix[0, 2] == pytest.approx(-1) and np.allclose(np.diag(matrix), 1)


def test_details_csv_has_every_image_with_its_verdict(scored):
    labels, scores, sources = scored
    rows = list(csv.reader(details_csv([f"{i}.png" for i in range(400)], scores, scores * 10,
                                       ["normal"] * 400, labels, sources).splitlines()))
    assert rows[0] == ["ID", "file", "score", "percentile", "verdict", "label", "source"]
    assert len(rows) == 401 and rows[400][1] == "399.png" and rows[400][-1] == "CIFAR-10"
    assert details_csv(["a"], [1.0], [50.0], ["normal"]).splitlines()[0] == "ID,file,score,percentile,verdict"


def test_auc_matches_sklearn_overall_and_per_source():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 50 + [1] * 50)
    sources = np.array([0] * 50 + [1] * 25 + [2] * 25)  # ids as the CLI reads them from an .npy
    scores = rng.normal(size=100) + labels * np.where(sources == 2, 2.0, 0.3)
    results = auc_by_source(labels, scores, sources)
    assert results["overall"] == pytest.approx(roc_auc_score(labels, scores))
    for source in (1, 2):
        keep = (sources == 0) | (sources == source)
        assert results[str(source)] == pytest.approx(roc_auc_score(labels[keep], scores[keep]))
    assert results["2"] > results["1"]


def test_known_scores_give_known_auc():
    assert auc_by_source([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])["overall"] == pytest.approx(0.75)


def test_single_class_is_refused_clearly():
    with pytest.raises(InputError, match="ROC-AUC needs both"):
        auc_by_source([1, 1, 1], [0.1, 0.2, 0.3])


def test_rank_average_ignores_scale():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([300.0, 100.0, 200.0])
    np.testing.assert_allclose(rank_average([a, b]), [0.5, 0.25, 0.75])


def test_submission_csv_is_hw8_kaggle_format(tmp_path):
    write_submission(tmp_path / "submission.csv", np.array([0.5, 2.0, 1e-3]))
    rows = list(csv.reader(open(tmp_path / "submission.csv")))
    assert rows[0] == ["ID", "score"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    assert [float(r[1]) for r in rows[1:]] == [0.5, 2.0, 1e-3]
    assert submission_csv([1.0]).endswith("\n")


def test_table_lists_every_model_and_source():
    table = format_table({"fcn": {"overall": 0.8, "UTKFace": 0.7, "FN": 12}, "cnn": {"overall": 0.6}})
    assert "fcn" in table and "0.7000" in table and "UTKFace" in table and " 12" in table and "12.0" not in table
