"""ad.evaluation: ROC-AUC overall and per source, ensembles, the submission CSV."""

import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ad import InputError
from ad.evaluation import auc_by_source, format_table, rank_average, submission_csv, write_submission


def test_auc_matches_sklearn_overall_and_per_source():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 50 + [1] * 50)
    sources = np.array([0] * 50 + [1] * 25 + [2] * 25)
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
    table = format_table({"fcn": {"overall": 0.8, "1": 0.7}, "cnn": {"overall": 0.6}})
    assert "fcn" in table and "0.7000" in table and "src 1" in table
