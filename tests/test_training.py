"""ad.training: a model that learns, a calibrated checkpoint, exact resume, two-process DDP."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ad.training
from ad import InputError, load_model
from ad.training import STATE_FILE, TrainConfig, train
from conftest import ROOT, TINY


def config(data_files, out, **overrides):
    settings = dict(arch="fcn", data=str(data_files / "trainingset.npy"), out=str(out), epochs=3,
                    batch_size=32, lr=3e-3, warmup_steps=5, model=TINY["fcn"], holdout=0.1)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_training_writes_a_calibrated_checkpoint_that_learned(data_files, tmp_path):
    out = tmp_path / "fcn"
    train(config(data_files, out, crop=(8, 8, 48, 48), test=str(data_files / "testingset.npy"),
                 labels=str(data_files / "testing_labels.npy"),
                 sources=str(data_files / "testing_sources.npy")))
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "metrics.json", "model.safetensors", "training.json"]
    training = json.loads((out / "training.json").read_text())
    history = [epoch["held_out_loss"] for epoch in training["history"]]
    assert training["finished"] and len(history) == 3
    assert history[-1] < history[0]
    model = load_model(out)
    assert model.crop == (8, 8, 48, 48) and model.calibrated
    quantiles = model.normal_score_quantiles.numpy()
    assert np.all(np.diff(quantiles) >= 0) and quantiles[0] > 0
    assert model.percentile(quantiles[-1] * 2) == 100
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["roc_auc"]) == {"overall", "1", "2"}
    card = (out / "README.md").read_text()
    assert "ROC-AUC" in card and "library_name: anomaly-detection-demo" in card


def test_resume_after_an_interruption_reaches_the_same_weights(data_files, tmp_path, monkeypatch):
    train(config(data_files, tmp_path / "straight"))

    real_save, saves = ad.training.save_checkpoint, []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt  # killed right after epoch 2's checkpoint

    monkeypatch.setattr(ad.training, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(config(data_files, tmp_path / "interrupted"))
    assert (tmp_path / "interrupted" / STATE_FILE).is_file()
    assert load_model(tmp_path / "interrupted").calibrated  # the partial run is a usable model
    monkeypatch.setattr(ad.training, "save_checkpoint", real_save)
    train(config(data_files, tmp_path / "interrupted", resume=True))

    assert not (tmp_path / "interrupted" / STATE_FILE).exists()
    straight = load_model(tmp_path / "straight").state_dict()
    resumed = load_model(tmp_path / "interrupted").state_dict()
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, msg=name)


def test_existing_checkpoints_are_not_overwritten_by_accident(data_files, tmp_path):
    train(config(data_files, tmp_path / "fcn", epochs=1))
    with pytest.raises(InputError, match="--resume .* or --overwrite"):
        train(config(data_files, tmp_path / "fcn", epochs=1))
    with pytest.raises(InputError, match="already finished"):
        train(config(data_files, tmp_path / "fcn", epochs=1, resume=True))
    train(config(data_files, tmp_path / "fcn", epochs=1, overwrite=True))


def test_test_set_problems_are_caught_before_training(data_files, tmp_path):
    with pytest.raises(InputError, match="--test needs --labels"):
        train(config(data_files, tmp_path / "x", test=str(data_files / "testingset.npy")))
    assert not (tmp_path / "x").exists()


def test_two_process_torchrun_trains_one_checkpoint(data_files, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "train.py"), "--arch", "cnn", "--data", str(data_files / "trainingset.npy"),
         "--out", str(out), "--epochs", "2", "--batch-size", "32", "--limit", "200",
         "--set", "channels=[8,16,32]", "--set", "latent_dim=16"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    training = json.loads((out / "training.json").read_text())
    assert training["finished"] and training["epochs_done"] == 2
    assert load_model(out).calibrated
