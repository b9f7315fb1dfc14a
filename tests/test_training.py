"""ad.training: a model that learned, a calibrated checkpoint, exact resume, two-process DDP."""

import json
import os
import socket
import subprocess
import sys
import zipfile
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn.metrics import roc_auc_score

import ad.checkpoint
import ad.training
from ad import InputError, create_model, load_model
from ad.checkpoint import HUB_FILES, STATE_FILE
from ad.data import MIN_TRAINING_IMAGES
from ad.scoring import anomaly_scores
from ad.training import TrainConfig, train
from conftest import ROOT, small, train_config


def test_training_writes_a_calibrated_checkpoint_that_learned(trained, test_images):
    out = trained("fcn")
    assert sorted(p.name for p in out.iterdir()) == sorted(HUB_FILES)
    training = json.loads((out / "training.json").read_text())
    history = [epoch["held_out_loss"] for epoch in training["history"]]
    assert training["finished"] and len(history) == training["config"]["epochs"] and history[-1] < 0.7 * history[0]
    model = load_model(out)
    quantiles = model.normal_score_quantiles.numpy()
    assert np.all(np.diff(quantiles) >= 0) and quantiles[0] > 0
    assert model.percentile(quantiles[-1] * 2) == 100
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["roc_auc"]) == {"overall", "stripes"} and metrics["roc_auc"]["overall"] > 0.9
    card = (out / "README.md").read_text()
    assert "ROC-AUC" in card and "library_name: anomaly-detection-demo" in card
    assert type(model).summary in card


def test_resume_after_an_interruption_reaches_the_same_weights(data_files, tmp_path, monkeypatch):
    train(train_config(data_files, tmp_path / "straight"))

    real_save, saves = ad.checkpoint.save, []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt  # killed right after epoch 2's checkpoint

    monkeypatch.setattr(ad.checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(train_config(data_files, tmp_path / "interrupted"))
    assert (tmp_path / "interrupted" / STATE_FILE).is_file()
    assert load_model(tmp_path / "interrupted").calibrated  # the partial run is a usable model
    monkeypatch.setattr(ad.checkpoint, "save", real_save)
    train(train_config(data_files, tmp_path / "interrupted", epochs=99, resume=True))  # epochs ignored

    assert not (tmp_path / "interrupted" / STATE_FILE).exists()
    straight = load_model(tmp_path / "straight").state_dict()
    resumed = load_model(tmp_path / "interrupted").state_dict()
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, msg=name)


def test_existing_checkpoints_are_not_overwritten_by_accident(data_files, tmp_path):
    train(train_config(data_files, tmp_path / "fcn", epochs=1))
    with pytest.raises(InputError, match="--resume .* or --overwrite"):
        train(train_config(data_files, tmp_path / "fcn", epochs=1))
    with pytest.raises(InputError, match="already finished"):
        train(train_config(data_files, tmp_path / "fcn", epochs=1, resume=True))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(InputError, match="replaces checkpoint folders only"):
        train(train_config(data_files, tmp_path / "notes", epochs=1, overwrite=True))
    train(train_config(data_files, tmp_path / "fcn", epochs=1, overwrite=True))


def test_test_set_problems_are_caught_before_training(data_files, tmp_path):
    with pytest.raises(InputError, match="needs labels"):
        train(train_config(data_files, tmp_path / "x", test=str(data_files / "testingset.npy")))
    assert not (tmp_path / "x").exists()


def test_the_test_set_may_be_a_zip_of_images(data_files, tmp_path, test_images):
    images, labels, _ = test_images
    with zipfile.ZipFile(tmp_path / "test.zip", "w") as archive:
        for i, image in enumerate(images):
            path = tmp_path / f"{i:03d}.png"
            Image.fromarray(image).save(path)
            archive.write(path, path.name)
    np.save(tmp_path / "labels.npy", labels)
    train(train_config(data_files, tmp_path / "fcn", epochs=1, test=str(tmp_path / "test.zip"),
                       labels=str(tmp_path / "labels.npy")))
    assert load_model(tmp_path / "fcn").metrics["test_images"] == len(images)


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


def test_a_short_run_reaches_its_peak_learning_rate_and_learns(data_files, test_images, tmp_path, monkeypatch):
    images, labels, _ = test_images
    rates, real_rate = [], ad.training.learning_rate

    def recorded_rate(*args):
        rates.append(real_rate(*args))
        return rates[-1]
    monkeypatch.setattr(ad.training, "learning_rate", recorded_rate)
    cfg = train_config(data_files, tmp_path / "fcn", epochs=2, warmup_steps=TrainConfig.warmup_steps)
    train(cfg)
    assert len(rates) < cfg.warmup_steps  # shorter than the warmup it was given
    assert max(rates) == pytest.approx(cfg.lr) and rates[-1] < 0.1 * cfg.lr  # then the cosine decay
    assert roc_auc_score(labels, anomaly_scores(load_model(tmp_path / "fcn"), images)) > 0.9


# A rank of a two-process gloo group on the CPU: trains with a Stop after epoch 1 (on rank 0, as the
# app's Stop button answers) and prints how many epochs this rank trained.
RANK_SCRIPT = """
import json, sys
import ad.training
from ad.training import TrainConfig, train
epochs, real_epoch = [], ad.training.train_one_epoch

def counted_epoch(run, epoch):
    epochs.append(epoch)
    return real_epoch(run, epoch)

ad.training.train_one_epoch = counted_epoch
train(TrainConfig(**json.loads(sys.argv[1])), on_epoch=lambda record: record["epoch"] == 1)
print("epochs trained:", len(epochs))
"""


def test_a_stop_on_rank_0_stops_every_rank_at_the_same_epoch(data_files, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = json.dumps(asdict(train_config(data_files, tmp_path / "ddp", epochs=3, limit=200)))
    ranks = [subprocess.Popen(
        [sys.executable, "-c", RANK_SCRIPT, cfg], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank),
                        "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        for rank in range(2)]
    try:
        outputs = [rank.communicate(timeout=120) for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()  # a rank left waiting for the other is not left behind
    for rank, (out, err) in zip(ranks, outputs):
        assert rank.returncode == 0, err[-3000:]
        assert "epochs trained: 1" in out
    training = json.loads((tmp_path / "ddp" / "training.json").read_text())
    assert training["epochs_done"] == 1 and not training["finished"]


def grey(image, side=64):
    return np.asarray(Image.fromarray(image).convert("L").resize((side, side)))


@pytest.mark.parametrize("form", ["folder of PNGs", "zip", "grey array 48x48"])
def test_training_from_any_form_of_normal_images_learns_to_separate(form, normal_images, test_images, tmp_path):
    images, labels, _ = test_images
    if form == "grey array 48x48":  # a different size and no colour: converted as image files are
        data = tmp_path / "grey.npy"
        np.save(data, np.stack([grey(x, 48) for x in normal_images]))
        images = np.stack([np.repeat(grey(x)[..., None], 3, axis=2) for x in images])  # tested in grey too
    else:
        data = tmp_path / "normal"
        (data / "nested").mkdir(parents=True)
        for i, image in enumerate(normal_images):
            Image.fromarray(image).save(data / ("nested" if i % 2 else "") / f"{i:03d}.png")
        if form == "zip":
            with zipfile.ZipFile(tmp_path / "normal.zip", "w") as archive:
                for path in sorted(data.rglob("*.png")):
                    archive.write(path, path.relative_to(data))
            data = tmp_path / "normal.zip"
    train(TrainConfig(arch="geo", data=str(data), out=str(tmp_path / "model"), epochs=6, batch_size=32,
                      warmup_steps=5, model=small("geo"), holdout=0.1))
    assert roc_auc_score(labels, anomaly_scores(load_model(tmp_path / "model"), images)) > 0.9


def test_the_recommended_detector_needs_only_the_data(normal_images, tmp_path, capsys):
    from ad.cli import main
    np.save(tmp_path / "normal.npy", normal_images[:200])
    main(["train", "--data", str(tmp_path / "normal.npy"), "--out", str(tmp_path / "model"), "--epochs", "1"])
    model = load_model(tmp_path / "model")
    cfg = ad.training.train_config(data=str(tmp_path / "normal.npy"), out=str(tmp_path / "model"))
    default = json.loads(json.dumps(create_model(cfg.arch, image_size=cfg.image_size, fit=cfg.fit).config))
    assert model.architecture == TrainConfig.arch and model.config == default


def write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")


def test_unreadable_files_are_skipped_and_named(normal_images, tmp_path, capsys):
    write_pngs(tmp_path / "normal", normal_images[:60])
    (tmp_path / "normal" / "broken.png").write_bytes(b"not a picture")
    (tmp_path / "normal" / "empty.jpg").write_bytes(b"")
    train(TrainConfig(arch="fcn", data=str(tmp_path / "normal"), out=str(tmp_path / "model"), epochs=1,
                      batch_size=16, model=small("fcn")))
    log = capsys.readouterr().out
    assert "skipped 2 unreadable file(s) of 62" in log and "broken.png" in log and "empty.jpg" in log


@pytest.mark.parametrize("make, message", [
    (lambda d, images: write_pngs(d, images[:MIN_TRAINING_IMAGES - 1]),
     f"{MIN_TRAINING_IMAGES - 1} images; training needs at least {MIN_TRAINING_IMAGES}"),
    (lambda d, images: d.mkdir(), "folder holds no images"),
    (lambda d, images: (write_pngs(d, images[:40]), [(d / f"bad{i}.png").write_text("x") for i in range(20)]),
     rf"40 images \(20 unreadable files skipped\); training needs at least {MIN_TRAINING_IMAGES}"),
    (lambda d, images: write_pngs(d, np.full((60, 64, 64, 3), 128, np.uint8)), "single flat colour"),
])
def test_a_training_set_that_cannot_teach_is_refused(make, message, normal_images, tmp_path):
    make(tmp_path / "data", normal_images)
    with pytest.raises(InputError, match=message):
        train(TrainConfig(arch="fcn", data=str(tmp_path / "data"), out=str(tmp_path / "model"), epochs=1))
    assert not (tmp_path / "model").exists()


def test_images_of_mixed_sizes_in_one_array_are_refused_with_a_way_out(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.zeros((10, 10), np.uint8), np.zeros((12, 12), np.uint8)]
    np.save(tmp_path / "ragged.npy", ragged, allow_pickle=True)
    with pytest.raises(InputError, match="mixed sizes.*folder of image files"):
        train(TrainConfig(arch="fcn", data=str(tmp_path / "ragged.npy"), out=str(tmp_path / "model")))


def test_a_time_budget_is_timed_without_changing_the_run_it_chooses(data_files, tmp_path):
    """The steps timed for --minutes run on copies: the run is the one its chosen epochs give."""
    train(train_config(data_files, tmp_path / "budget", epochs=None, minutes=1e-4))  # too short for any step
    training = json.loads((tmp_path / "budget" / "training.json").read_text())
    assert training["config"]["epochs"] == 1 and training["epochs_done"] == 1  # never less than one epoch
    train(train_config(data_files, tmp_path / "epochs", epochs=1))
    timed, plain = (load_model(tmp_path / name).state_dict() for name in ("budget", "epochs"))
    for name, tensor in plain.items():
        torch.testing.assert_close(timed[name], tensor, msg=name)


def test_a_larger_budget_buys_more_steps_and_a_resume_keeps_the_epochs_chosen(data_files, tmp_path, monkeypatch):
    monkeypatch.setattr(ad.training, "seconds_per_run_step", lambda run: 0.5)
    # 300 images to train on in 9 steps of 32, 100 held out (4 batches): (9 + 4) * 0.5 s + 0.2 s an epoch
    steps = []
    for minutes in (0.05, 0.5):
        train(train_config(data_files, tmp_path / f"{minutes}", epochs=None, minutes=minutes))
        training = json.loads((tmp_path / f"{minutes}" / "training.json").read_text())
        steps.append(training["config"]["epochs"] * 9)
        assert training["config"]["minutes"] == minutes and training["epochs_done"] == training["config"]["epochs"]
    assert steps == [9, 4 * 9]  # 3 s: one epoch, 30 s: four

    real_save, saves = ad.checkpoint.save, []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(ad.checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(train_config(data_files, tmp_path / "resumed", epochs=None, minutes=0.5))
    monkeypatch.setattr(ad.checkpoint, "save", real_save)
    monkeypatch.setattr(ad.training, "seconds_per_run_step", lambda run: pytest.fail("a resume re-timed"))
    train(TrainConfig(out=str(tmp_path / "resumed"), resume=True))
    training = json.loads((tmp_path / "resumed" / "training.json").read_text())
    assert training["finished"] and training["config"]["epochs"] == training["epochs_done"] == 4


def test_the_train_tabs_lengths_are_time_budgets_on_this_machine(monkeypatch):
    from ad.ui.handlers import LENGTHS
    monkeypatch.setattr(ad.training, "seconds_per_step", lambda *args: 0.5)
    # 1,000 images: 200 held out (2 batches), 800 to train on in 6 steps of 128, and geo's memory reads
    # the 800 again after each epoch (7 batches): (6 + 2 + 7) * 0.5 s + 0.2 s an epoch
    (quick, steps, quick_seconds), (standard, _, standard_seconds) = (
        ad.training.training_estimate(1000, "geo", minutes=LENGTHS[length]) for length in ("quick", "standard"))
    assert steps == 6 and (quick, standard) == (7, 38)  # the epochs that fit in 60 s and in 300 s
    assert quick_seconds <= 60 < 290 < standard_seconds <= 300
    assert ad.training.training_estimate(1000, "geo", minutes=1e-4)[0] == 1  # never no training at all
    # a memory reads its images once, whatever the budget: one epoch of no steps
    assert ad.training.training_estimate(1000, "patch", minutes=LENGTHS["standard"])[:2] == (1, 0)


def test_geos_memory_is_what_its_final_network_sees_in_its_training_images(trained, data_files):
    import copy

    from ad.scoring import remember
    model = load_model(trained("geo"))
    cfg = json.loads((trained("geo") / "training.json").read_text())["config"]
    images = np.load(data_files / "trainingset.npy")
    train_idx, _ = ad.training.split_holdout(len(images), cfg["holdout"], cfg["seed"])
    again = copy.deepcopy(model)
    again.memory.zero_()
    remember(again, images[train_idx], cfg["seed"], learned=True)
    assert model.memory.any() and torch.equal(again.memory, model.memory)  # refilled after the last epoch


def test_a_memory_trains_in_one_pass_of_no_steps_whatever_its_budget(data_files, tmp_path):
    model = train(train_config(data_files, tmp_path / "patch", "patch", epochs=None, minutes=0.5))
    training = json.loads((tmp_path / "patch" / "training.json").read_text())
    assert training["epochs_done"] == training["config"]["epochs"] == 1 and training["finished"]
    assert model.memory.abs().sum() > 0 and model.calibrated and model.pixels_calibrated  # remembered and calibrated


@pytest.mark.parametrize("flags, message", [
    (["--minutes", "2", "--epochs", "3"], "give --minutes or --epochs, not both"),
    (["--minutes", "0"], "more than 0 minutes"),
])
def test_a_budget_that_cannot_be_met_is_refused(flags, message, data_files, tmp_path, capsys):
    from ad.cli import main
    with pytest.raises(SystemExit) as exit:
        main(["train", "--data", str(data_files / "trainingset.npy"), "--out", str(tmp_path / "model"), *flags])
    assert exit.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
