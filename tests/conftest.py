"""Shared fixtures: images the tests make, one tiny trained model per architecture; environment first."""

import copy
import json
import os
import socket
import tempfile
from pathlib import Path

# Set before gradio or huggingface_hub is imported anywhere: both read these once, at import.
_hub_port = socket.socket()
_hub_port.bind(("127.0.0.1", 0))
HUB_PORT = _hub_port.getsockname()[1]
_hub_port.close()
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"  # tests' own Hub server (test_hub.py)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf-home-")
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_TOKEN", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ad.models import model_class  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FACES_DEV = Path(os.environ.get("AD_FACES_DEV", ROOT.parent / "shared" / "data" / "faces-dev"))
EXAMPLES = ROOT / "examples"
SAMPLE_TESTSET = EXAMPLES / "sample_testset"

# One thread: the tiny models gain nothing from two, and the app serves two requests at once.
torch.set_num_threads(1)


def small(arch):
    """The architecture's own small configuration: real, and trained in seconds on a CPU."""
    return copy.deepcopy(model_class(arch).small_config)  # duo's holds its members' own: never edit those


def make_images(count, kind="normal", seed=0):
    """64x64 RGB images of two kinds the tests can tell apart.

    normal: a soft disc of any bright colour, 14 to 17 px in radius, near the centre of a dark
    frame, on a stick down to the bottom edge (so it has an upright); anomaly: stripes of the same
    colours at any angle, filling the frame.
    """
    rng = np.random.default_rng([seed, kind == "normal"])
    yy, xx = np.mgrid[:64, :64].astype(np.float32)
    images = np.empty((count, 64, 64, 3), np.uint8)
    for i in range(count):
        colour = rng.uniform(0.4, 1.0, 3)
        if kind == "normal":
            cy, cx = 32 + rng.normal(0, 1.5, 2)
            disc = np.clip(rng.uniform(14, 17) - np.hypot(yy - cy, xx - cx), 0, 1)
            stick = (np.abs(xx - cx) < 3) & (yy > cy)
            mask = np.maximum(disc, stick)
        else:
            angle, period = rng.uniform(0, np.pi), rng.uniform(6, 16)
            mask = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0).astype(np.float32)
        image = 0.1 + mask[..., None] * colour + rng.normal(0, 0.02, (64, 64, 3))
        images[i] = np.clip(image * 255, 0, 255).astype(np.uint8)
    return images


def add_flaws(images, seed=0, side=14):
    """(flawed copies, masks (N, 64, 64) bool): a side x side patch of stripes painted at a random
    place on each image: a flaw on an otherwise normal thing."""
    rng = np.random.default_rng(seed)
    stripes = make_images(len(images), "anomaly", seed=seed + 100)
    flawed, masks = images.copy(), np.zeros(images.shape[:3], dtype=bool)
    for i in range(len(images)):
        top, left = rng.integers(4, 64 - side - 4, 2)
        flawed[i, top:top + side, left:left + side] = stripes[i, top:top + side, left:left + side]
        masks[i, top:top + side, left:left + side] = True
    return flawed, masks


def make_textures(count, seed=0):
    """64x64 grey surfaces of one fine grain (a tile, a sheet of metal), each a little lighter or darker."""
    rng = np.random.default_rng([seed, 7])
    grain = rng.uniform(0.35, 0.65, (count, 1, 1, 1)) + rng.normal(0, 0.08, (count, 64, 64, 1))
    return (np.clip(grain, 0, 1).repeat(3, axis=3) * 255).astype(np.uint8)


def add_stains(images, seed=0, radius=7):
    """(stained copies, masks): a dark round stain (a blowhole, a drop) at a random place on each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    stained, masks = images.copy(), np.zeros(images.shape[:3], dtype=bool)
    for i in range(len(images)):
        cy, cx = rng.integers(radius + 5, 64 - radius - 5, 2)
        masks[i] = np.hypot(yy - cy, xx - cx) < radius
        stained[i][masks[i]] = (stained[i][masks[i]] * 0.35).astype(np.uint8)
    return stained, masks


def train_once(out, config):
    """Train config() into `out` unless a finished run is there. Under a lock: under xdist one worker
    trains and the others wait, then all read the same folder."""
    from filelock import FileLock

    from ad.training import train
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        record = out / "training.json"
        if not (record.exists() and json.loads(record.read_text())["finished"]):
            train(config())
    return out


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory, worker_id):
    """A folder of this test run that every xdist worker sees (their own temp folders lie inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def trained_on_texture(tmp_path_factory, shared_tmp):
    """The small segmenter, with a reconstructor, trained on textured surfaces as `trained` trains the
    other models (`trained("seg")`: the default, without one)."""
    from ad.training import TrainConfig
    folder = tmp_path_factory.mktemp("texture")
    np.save(folder / "surfaces.npy", make_textures(400))
    return train_once(shared_tmp / "texture" / "seg", lambda: TrainConfig(
        arch="seg", data=str(folder / "surfaces.npy"), out=str(shared_tmp / "texture" / "seg"), overwrite=True,
        epochs=SMALL_EPOCHS["seg"], batch_size=32, lr=1e-2, warmup_steps=5, holdout=0.1,
        model={**small("seg"), "width": 8, "reconstructor_width": 4}))  # width 4 learned the stains in some seeds only


@pytest.fixture(scope="session")
def patch_on_texture(tmp_path_factory, shared_tmp):
    """The patch memory of textured surfaces, as train.py makes it (in seconds: it only remembers)."""
    from ad.training import TrainConfig
    folder = tmp_path_factory.mktemp("texture-patch")
    np.save(folder / "surfaces.npy", make_textures(400))
    return train_once(shared_tmp / "texture" / "patch", lambda: TrainConfig(
        arch="patch", data=str(folder / "surfaces.npy"), out=str(shared_tmp / "texture" / "patch"), overwrite=True,
        holdout=0.1, model=small("patch")))


def write_mvtec(root, normal, flawed, masks, kind="patch", mask_suffix="_mask"):
    """A test set in MVTec AD's layout: test/good, test/<kind>, ground_truth/<kind>/<name><suffix>.png."""
    from PIL import Image
    for folder in ("test/good", f"test/{kind}", f"ground_truth/{kind}"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(normal):
        Image.fromarray(image).save(root / "test" / "good" / f"{i:03d}.png")
    for i, (image, mask) in enumerate(zip(flawed, masks)):
        Image.fromarray(image).save(root / "test" / kind / f"{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "ground_truth" / kind / f"{i:03d}{mask_suffix}.png")
    return root / "test"


@pytest.fixture(scope="session")
def normal_images():
    return make_images(400, "normal")


@pytest.fixture(scope="session")
def test_images():
    """(images, labels, sources): 40 unseen normal images, then 40 anomalies."""
    images = np.concatenate([make_images(40, "normal", seed=1), make_images(40, "anomaly", seed=1)])
    labels = np.repeat([0, 1], 40).astype(np.uint8)
    return images, labels, np.where(labels == 1, "stripes", "disc")


@pytest.fixture(scope="session")
def data_files(tmp_path_factory, normal_images, test_images):
    """The images written as HW8-layout files, as users have them."""
    folder = tmp_path_factory.mktemp("hw8")
    np.save(folder / "trainingset.npy", normal_images)
    images, labels, sources = test_images
    np.save(folder / "testingset.npy", images)
    np.save(folder / "testing_labels.npy", labels)
    np.save(folder / "testing_sources.npy", sources)
    return folder


SMALL_EPOCHS = {"seg": 10, "duo": 10}  # a segmenter learns from defects it makes itself: it needs more steps


def train_config(data_files, out, arch="fcn", **overrides):
    from ad.training import TrainConfig
    settings = dict(arch=arch, data=str(data_files / "trainingset.npy"), out=str(out), epochs=3,
                    batch_size=32, lr=3e-3, warmup_steps=5, model=small(arch), holdout=0.1)
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def trained(data_files, shared_tmp):
    """trained(arch) -> the checkpoint folder of a small model trained on the normal images (once
    per architecture and test run, by whichever xdist worker asks first), evaluated on the test images."""
    def get(arch):
        out = shared_tmp / "trained" / arch
        return train_once(out, lambda: train_config(
            data_files, out, arch, epochs=SMALL_EPOCHS.get(arch, 3), overwrite=True,
            test=str(data_files / "testingset.npy"), labels=str(data_files / "testing_labels.npy"),
            sources=str(data_files / "testing_sources.npy")))
    return get


@pytest.fixture(scope="session")
def faces_dev():
    """The face benchmark: only the tests of benchmark quality read it."""
    if not (FACES_DEV / "trainingset.npy").is_file():
        pytest.skip(f"the faces-dev benchmark is not at {FACES_DEV}: these tests measure the shipped "
                    "checkpoints on it (set AD_FACES_DEV to its folder)")
    return FACES_DEV
