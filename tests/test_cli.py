"""The command line: train.py and `python -m ad score / evaluate / calibrate`, in-process and end to end."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from ad import load_model
from ad.cli import THRESHOLD_PERCENTILE, main
from ad.evaluation import METRICS
from ad.training import MIN_EPOCHS, TrainConfig
from ad.scoring import anomaly_scores
from conftest import ROOT, add_flaws, make_images, write_mvtec


def run(argv, capsys):
    """main(argv) in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()  # what came before (a fixture's training log) is not this command's
    try:
        main(argv)
        status = 0
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def test_train_writes_a_checkpoint_with_the_options_given(data_files, tmp_path, capsys):
    status, _, err = run(["train", "--arch", "fcn", "--data", str(data_files / "trainingset.npy"),
                          "--out", str(tmp_path / "fcn"), "--epochs", "1", "--batch-size", "32",
                          "--set", "hidden=[64]", "--set", "latent_dim=8", "--crop", "8,8,48,48"], capsys)
    assert status == 0, err
    model = load_model(tmp_path / "fcn")
    assert model.crop == (8, 8, 48, 48) and model.config["hidden"] == [64]
    config = model.training_record["config"]
    assert config["epochs"] == 1 and config["lr"] == TrainConfig.lr  # the default
    assert "--crop 8,8,48,48" in config["command"]


def test_min_steps_sets_how_many_passes_a_small_set_gets(data_files, tmp_path, capsys):
    # 400 images in batches of 32 are at most 12 steps a pass: the default 100 steps need 9 passes or more
    status, _, err = run(["train", "--arch", "fcn", "--data", str(data_files / "trainingset.npy"),
                          "--out", str(tmp_path / "fcn"), "--min-steps", "1", "--batch-size", "32",
                          "--set", "hidden=[64]", "--set", "latent_dim=8"], capsys)
    assert status == 0, err
    config = load_model(tmp_path / "fcn").training_record["config"]
    assert config["min_steps"] == 1 and config["epochs"] == MIN_EPOCHS


def test_resume_names_the_flags_it_ignores(data_files, tmp_path, capsys):
    out = tmp_path / "fcn"
    base = ["train", "--arch", "fcn", "--data", str(data_files / "trainingset.npy"), "--out", str(out),
            "--batch-size", "32", "--set", "hidden=[64]", "--set", "latent_dim=8"]
    assert run(base + ["--epochs", "1"], capsys)[0] == 0
    status, _, err = run(["train", "--out", str(out), "--resume", "--epochs", "5", "--lr", "0.1"], capsys)
    assert status == 2 and "already finished" in err
    assert f"ignoring --epochs 5 (the run has 1), --lr 0.1 (the run has {TrainConfig.lr})" in err


def test_score_writes_the_kaggle_submission(trained, data_files, tmp_path, capsys):
    status, out, _ = run(["score", "--checkpoint", str(trained("fcn")), "--images",
                          str(data_files / "testingset.npy"), "--out", str(tmp_path / "submission.csv")], capsys)
    assert status == 0 and "wrote 80 scores" in out
    rows = list(csv.reader(open(tmp_path / "submission.csv")))
    images = np.load(data_files / "testingset.npy")
    assert rows[0] == ["ID", "score"] and len(rows) == len(images) + 1
    expected = anomaly_scores(load_model(trained("fcn")), images)
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], expected, rtol=1e-6)


def test_evaluate_reports_sklearn_auc_per_source_and_an_ensemble(trained, data_files, capsys):
    folders = [str(trained("fcn")), str(trained("geo"))]
    status, out, err = run(["evaluate", "--checkpoint", *folders, "--images", str(data_files / "testingset.npy"),
                          "--labels", str(data_files / "testing_labels.npy"),
                          "--sources", str(data_files / "testing_sources.npy"), "--json"], capsys)
    assert status == 0, err
    results = json.loads(out)
    images, labels = np.load(data_files / "testingset.npy"), np.load(data_files / "testing_labels.npy")
    expected = roc_auc_score(labels, anomaly_scores(load_model(folders[0]), images))
    assert results["fcn"]["roc_auc"]["overall"] == pytest.approx(expected)
    assert set(results) == {"fcn", "geo", "ensemble"} and set(results["geo"]["roc_auc"]) == {"overall", "stripes"}
    image_metrics = {key for key, metric in METRICS.items() if not metric.needs_masks}
    assert {*image_metrics, "best_f1"} <= set(results["fcn"]) and not set(METRICS) - image_metrics & set(results["fcn"])
    assert "at_threshold" not in results["fcn"]  # only when a threshold is asked for
    status, table, _ = run(["evaluate", "--checkpoint", *folders, "--images", str(data_files / "testingset.npy"),
                            "--labels", str(data_files / "testing_labels.npy")], capsys)
    assert status == 0 and all(name in table for name in ("fcn", "geo", "ensemble"))
    assert all(metric.column in table for key, metric in METRICS.items() if key != "roc_auc" and not metric.needs_masks)


def test_evaluate_at_a_threshold_percentile_counts_what_the_verdicts_would_be(trained, data_files, capsys):
    folder = str(trained("fcn"))
    test = ["--images", str(data_files / "testingset.npy"), "--labels", str(data_files / "testing_labels.npy")]
    status, out, err = run(["evaluate", "--checkpoint", folder, *test, "--threshold-percentile", "95", "--json"],
                           capsys)
    assert status == 0, err
    at = json.loads(out)["fcn"]["at_threshold"]
    model, labels = load_model(folder), np.load(data_files / "testing_labels.npy")
    called = anomaly_scores(model, np.load(data_files / "testingset.npy")) > model.threshold(95)
    assert at["percentile"] == 95 and at["true_positives"] == int((called & (labels == 1)).sum())
    assert at["false_positives"] == int((called & (labels == 0)).sum())
    assert at["recall"] > 0.8  # the tiny model learned: most stripes are caught at 5% false positives
    status, table, _ = run(["evaluate", "--checkpoint", folder, *test, "--threshold-percentile", "95"], capsys)
    assert status == 0 and "At the 95th percentile" in table and "false_positives" in table
    status, _, err = run(["evaluate", "--checkpoint", folder, *test, "--threshold-percentile", "120"], capsys)
    assert status == 2 and "expected a percentile from 0 to 100" in err


def test_score_writes_every_image_with_its_percentile_and_verdict(trained, data_files, tmp_path, capsys):
    status, out, err = run(["score", "--checkpoint", str(trained("fcn")), "--images",
                            str(data_files / "testingset.npy"), "--out", str(tmp_path / "s.csv"),
                            "--details", str(tmp_path / "d.csv")], capsys)
    assert status == 0 and "anomalous) to" in out, err
    rows = list(csv.DictReader(open(tmp_path / "d.csv")))
    assert len(rows) == 80 and {r["verdict"] for r in rows} == {"normal", "anomalous"}
    assert all((r["verdict"] == "anomalous") == (float(r["percentile"]) > THRESHOLD_PERCENTILE) for r in rows
               if abs(float(r["percentile"]) - THRESHOLD_PERCENTILE) > 0.01)


def test_evaluate_reads_labels_from_sub_folders_as_mvtec_lays_them_out(trained, test_images, tmp_path, capsys):
    images, labels, _ = test_images
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "test" / ("good" if label == 0 else "stripes")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    status, out, err = run(["evaluate", "--checkpoint", str(trained("fcn")), "--images", str(tmp_path / "test"),
                            "--json"], capsys)
    assert status == 0, err
    result = json.loads(out)["fcn"]["roc_auc"]
    assert set(result) == {"overall", "stripes"} and result["overall"] > 0.9


@pytest.mark.parametrize("argv, message", [
    (["score", "--checkpoint", "no/such-model", "--images", "x.npy", "--out", "o.csv"], "no/such-model"),
    (["score", "--checkpoint", "checkpoints/fcn", "--images", "missing.npy", "--out", "o.csv"],
     "missing.npy: no such file"),
    (["train", "--arch", "fcn", "--data", "README.md", "--out", "never"], "unsupported file type '.md'"),
    (["train", "--out", "never"], "needs the normal images (--data)"),
    (["train", "--arch", "fcn", "--data", "x.npy", "--out", "never", "--epochs", "0"], "--epochs must be"),
    (["train", "--arch", "fcn", "--data", "x.npy", "--out", "never", "--min-steps", "0"], "--min-steps must be"),
    (["evaluate", "--checkpoint", "checkpoints/fcn", "--images", "examples/sample_testset/testingset.npy",
      "--labels", "README.md"], "labels must be a .npy or a .csv"),
])
def test_bad_input_exits_2_with_a_message_and_no_traceback(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    status, _, err = run(argv, capsys)
    assert status == 2 and err.startswith("error: ") and message in err


def test_an_unwritable_output_exits_1_without_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    (tmp_path / "file").write_text("x")
    status, _, err = run(["score", "--checkpoint", "checkpoints/fcn", "--images",
                          "examples/images/normal_celeba_1.png", "--out", str(tmp_path / "file" / "sub.csv")],
                         capsys)
    assert status == 1 and err.startswith("error: ")


def test_each_command_runs_end_to_end_as_a_program(trained, data_files, tmp_path):
    def program(*args):
        return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})

    folder = tmp_path / "fcn"
    shutil.copytree(trained("fcn"), folder)
    test = ["--images", str(data_files / "testingset.npy")]
    score = program("-m", "ad", "score", "--checkpoint", str(folder), *test, "--out", str(tmp_path / "s.csv"))
    assert score.returncode == 0 and (tmp_path / "s.csv").read_text().startswith("ID,score\n"), score.stderr
    evaluate = program("-m", "ad", "evaluate", "--checkpoint", str(folder), *test, "--labels",
                       str(data_files / "testing_labels.npy"), "--json")
    assert evaluate.returncode == 0 and json.loads(evaluate.stdout)["fcn"]["roc_auc"]["overall"] > 0.9, evaluate.stderr
    calibrate = program("-m", "ad", "calibrate", "--checkpoint", str(folder), "--images",
                        str(data_files / "trainingset.npy"))
    assert calibrate.returncode == 0 and "calibrated" in calibrate.stdout, calibrate.stderr
    bad = program("train.py", "--arch", "fcn", "--data", "README.md", "--out", str(tmp_path / "never"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_evaluate_finds_mvtec_masks_and_reports_pixel_metrics_per_kind(trained, tmp_path, capsys):
    normal = make_images(12, "normal", seed=5)
    flawed, masks = add_flaws(make_images(12, "normal", seed=6), seed=6)
    test = write_mvtec(tmp_path / "parts", normal, flawed, masks)  # ground_truth/ beside test/, found by itself
    status, out, err = run(["evaluate", "--checkpoint", str(trained("fcn")), "--images", str(test), "--json"], capsys)
    assert status == 0, err
    results = json.loads(out)["fcn"]
    assert set(results["pixel_roc_auc"]) == set(results["pixel_aupro"]) == {"overall", "patch"}
    assert results["pixel_roc_auc"]["overall"] > 0.8  # the residual lies on the painted patch
    assert 0 < results["pixel_aupro"]["overall"] <= 1
    status, table, _ = run(["evaluate", "--checkpoint", str(trained("fcn")), "--images", str(test)], capsys)
    assert status == 0 and METRICS["pixel_aupro"].title in table and METRICS["pixel_roc_auc"].title in table
    (tmp_path / "parts" / "ground_truth" / "patch" / "003_mask.png").unlink()
    status, _, err = run(["evaluate", "--checkpoint", str(trained("fcn")), "--images", str(test)], capsys)
    assert status != 0 and "patch/003" in err and "without a mask" in err
