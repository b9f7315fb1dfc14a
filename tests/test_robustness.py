"""Robustness: odd images, hostile archives, training killed at any moment."""

import io
import json
import os
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

import ad.data.images
from ad import InputError, load_model
from ad.checkpoint import CARD_FILE, CONFIG_FILE, TRAINING_FILE, WEIGHTS_FILE
from ad.data import load_images, open_image
from conftest import ROOT


def encoded(image, format="PNG", **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


RED = (255, 0, 0)


@pytest.mark.parametrize("name, data, colour", [
    ("one pixel", lambda: encoded(Image.new("RGB", (1, 1), (10, 200, 30))), (10, 200, 30)),
    ("grayscale", lambda: encoded(Image.new("L", (50, 70), 90)), (90, 90, 90)),
    ("palette", lambda: encoded(Image.new("RGB", (40, 40), (0, 0, 255)).convert("P")), (0, 0, 255)),
    ("palette with transparency", lambda: encoded(Image.new("RGBA", (40, 40), (0, 0, 0, 0)).convert("P")),
     (255, 255, 255)),
    ("CMYK JPEG", lambda: encoded(Image.new("CMYK", (80, 60), (0, 255, 255, 0)), "JPEG"), RED),
    ("16-bit PNG", lambda: encoded(Image.fromarray(np.full((30, 30), 60000, np.uint16))), (233, 233, 233)),
    ("animated GIF", lambda: encoded(Image.new("RGB", (32, 32), RED), "GIF", save_all=True,
                                     append_images=[Image.new("RGB", (32, 32), (0, 255, 0))], loop=0), RED),
    ("BMP", lambda: encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "BMP"), (1, 2, 3)),
    ("WebP", lambda: encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "WEBP", lossless=True), (1, 2, 3)),
])
def test_unusual_but_valid_images_keep_their_colours(name, data, colour):
    array = open_image(data(), name=name)
    assert array.shape == (64, 64, 3) and array.dtype == np.uint8
    np.testing.assert_allclose(array.reshape(-1, 3).mean(axis=0), colour, atol=3)


def test_animated_gif_uses_its_first_frame():
    data = encoded(Image.new("RGB", (32, 32), (255, 0, 0)), "GIF", save_all=True,
                   append_images=[Image.new("RGB", (32, 32), (0, 255, 0))])
    assert tuple(open_image(data)[5, 5]) == (255, 0, 0)


def test_truncated_jpeg_is_refused():
    data = encoded(Image.fromarray(np.random.default_rng(1).integers(0, 255, (128, 128, 3), np.uint8)), "JPEG")
    with pytest.raises(InputError, match="corrupt or truncated|not an image"):
        open_image(data[: len(data) // 3])


def test_zip_with_too_many_members_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ad.data.images, "MAX_ZIP_MEMBERS", 10)
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as archive:
        for i in range(11):
            archive.writestr(f"{i}.png", encoded(Image.new("RGB", (4, 4))))
    with pytest.raises(InputError, match="11 files; at most 10"):
        load_images(tmp_path / "many.zip")


def test_zip_bomb_is_refused_before_unpacking(tmp_path, monkeypatch):
    monkeypatch.setattr(ad.data.images, "MAX_ZIP_BYTES", 2 * 1024**2)  # the same check as at 2 GB, smaller
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):  # 3 MB of zeros, a few KB on disk
            archive.writestr(f"{i}.png", bytes(1024 * 1024))
    assert (tmp_path / "bomb.zip").stat().st_size < 50_000
    with pytest.raises(InputError, match="unpacks to 3 MB; at most 2 MB"):
        load_images(tmp_path / "bomb.zip")


def test_zip_member_that_lies_about_its_size_is_refused(tmp_path):
    payload = encoded(Image.new("RGB", (64, 64), (9, 9, 9)))
    with zipfile.ZipFile(tmp_path / "liar.zip", "w") as archive:
        archive.writestr("a.png", payload)
    data = bytearray((tmp_path / "liar.zip").read_bytes())
    data[data.index(payload) + 40] ^= 0xFF  # damage the stored bytes: the CRC no longer matches
    (tmp_path / "liar.zip").write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt"):
        load_images(tmp_path / "liar.zip")


# ---------------------------------------------------------------- killed training

# train.py in a child that SIGKILLs itself at the moment KILL names (nothing in ad knows of it):
# "save N" right after its Nth checkpoint, "rename N" just before its Nth rename of the weights into
# the checkpoint folder (in the middle of a save), "step N" at the start of its Nth optimizer step.
KILLED_TRAIN_SCRIPT = """
import os, runpy, signal, sys
from pathlib import Path
import torch
import ad.checkpoint
from ad.checkpoint import WEIGHTS_FILE

where, count = os.environ["KILL"].split()
calls = []

def count_and_maybe_die(*_):
    calls.append(1)
    if len(calls) == int(count):
        os.kill(os.getpid(), signal.SIGKILL)

if where == "save":
    real_save = ad.checkpoint.save
    ad.checkpoint.save = lambda *args, **kwargs: count_and_maybe_die(real_save(*args, **kwargs))
elif where == "rename":
    real_replace, weights = os.replace, Path(sys.argv[sys.argv.index("--out") + 1]) / WEIGHTS_FILE
    os.replace = lambda src, dst: (Path(dst) == weights and count_and_maybe_die(), real_replace(src, dst))[1]
elif where == "step":
    real_step = torch.optim.AdamW.step
    torch.optim.AdamW.step = lambda self, *args, **kwargs: (count_and_maybe_die(), real_step(self, *args, **kwargs))[1]
sys.argv = sys.argv[1:]  # as if train.py had been run
runpy.run_path(sys.argv[0], run_name="__main__")
"""
EPOCHS = 6  # of 8 steps each: 300 images, 5% held out, batches of 32


def train_command(data_files, out, *extra):
    return ["train.py", "--arch", "cnn", "--data", str(data_files / "trainingset.npy"),
            "--out", str(out), "--epochs", str(EPOCHS), "--batch-size", "32", "--limit", "300",
            "--set", "channels=[8,16,32]", "--set", "latent_dim=16", *extra]


def epochs_done(out):
    return json.loads((out / TRAINING_FILE).read_text())["epochs_done"]


def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint_and_resume_finishes(data_files, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "killed"
    for kill, done in [("save 1", 1),  # between two epochs
                       ("rename 2", 2),  # epoch 2 saved, then killed in the middle of epoch 3's save
                       ("step 11", 4)]:  # epoch 3's resume state was in place: epoch 4 saved, 5 killed
        resume = ["--resume"] if out.exists() else []
        child = subprocess.run([sys.executable, "-c", KILLED_TRAIN_SCRIPT, *train_command(data_files, out, *resume)],
                               cwd=ROOT, env={**env, "KILL": kill}, capture_output=True, text=True, timeout=300)
        assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]  # killed where asked, not finished
        assert load_model(out).calibrated  # at whatever moment it died, the folder loads
        assert epochs_done(out) == done, kill
    subprocess.run([sys.executable, *train_command(data_files, out, "--resume")], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    assert epochs_done(out) == EPOCHS and load_model(out).calibrated  # (equal weights: test_training.py)
    assert sorted(p.name for p in out.iterdir()) == sorted([CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, TRAINING_FILE])
    assert [p.name for p in tmp_path.iterdir()] == ["killed"]  # no leftovers beside it
