"""The command line: train.py, `python -m ad score / evaluate`, and clean failures."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ad import load_model
from ad.scoring import anomaly_scores
from conftest import ROOT


def run(*args, check=True):
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def checkpoint(data_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "fcn"
    run("train.py", "--arch", "fcn", "--data", str(data_files / "trainingset.npy"), "--out", str(out),
        "--epochs", "2", "--batch-size", "32", "--set", "hidden=[64]", "--set", "latent_dim=8",
        "--crop", "8,8,48,48")
    return out


def test_score_writes_the_kaggle_submission(checkpoint, data_files, tmp_path):
    run("-m", "ad", "score", "--checkpoint", str(checkpoint), "--images",
        str(data_files / "testingset.npy"), "--out", str(tmp_path / "submission.csv"))
    rows = list(csv.reader(open(tmp_path / "submission.csv")))
    images = np.load(data_files / "testingset.npy")
    assert rows[0] == ["ID", "score"] and len(rows) == len(images) + 1
    expected = anomaly_scores(load_model(checkpoint), images)
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], expected, rtol=1e-6)


def test_evaluate_reports_sklearn_auc_per_source(checkpoint, data_files):
    result = run("-m", "ad", "evaluate", "--checkpoint", str(checkpoint), "--images",
                 str(data_files / "testingset.npy"), "--labels", str(data_files / "testing_labels.npy"),
                 "--sources", str(data_files / "testing_sources.npy"), "--json")
    auc = json.loads(result.stdout)["fcn"]
    images = np.load(data_files / "testingset.npy")
    labels = np.load(data_files / "testing_labels.npy")
    assert auc["overall"] == pytest.approx(roc_auc_score(labels, anomaly_scores(load_model(checkpoint), images)))
    assert set(auc) == {"overall", "1", "2"}


def test_evaluate_table_includes_an_ensemble_of_several_checkpoints(checkpoint, data_files):
    result = run("-m", "ad", "evaluate", "--checkpoint", str(checkpoint), str(ROOT / "checkpoints" / "cnn"),
                 "--images", str(data_files / "testingset.npy"),
                 "--labels", str(data_files / "testing_labels.npy"))
    assert "ensemble" in result.stdout and "fcn" in result.stdout and "cnn" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["-m", "ad", "score", "--checkpoint", "no/such-model", "--images", "x.npy", "--out", "o.csv"],
     "no/such-model"),
    (["-m", "ad", "score", "--checkpoint", "checkpoints/fcn", "--images", "missing.npy", "--out", "o.csv"],
     "missing.npy: no such file"),
    (["train.py", "--arch", "fcn", "--data", "README.md", "--out", "/tmp/never"], "README.md: not an .npy file"),
])
def test_bad_input_exits_non_zero_with_a_message_and_no_traceback(args, message):
    result = run(*args, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr
