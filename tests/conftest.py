"""Shared fixtures: small slices of faces-dev, tiny models; environment set before any import."""

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

ROOT = Path(__file__).resolve().parents[1]
FACES_DEV = Path(os.environ.get("AD_FACES_DEV", ROOT.parent / "shared" / "data" / "faces-dev"))
NORMAL, UTKFACE, CIFAR = 0, 1, 2  # faces-dev's testing_sources.npy

# Small but real configurations, so every architecture trains in seconds on a CPU.
TINY = {
    "fcn": {"hidden": [64], "latent_dim": 8},
    "cnn": {"channels": [8, 16, 32], "latent_dim": 16},
    "vae": {"channels": [8, 16, 32], "latent_dim": 16},
    "resnet": {"channels": [8, 16], "latent_dim": 16, "blocks_per_stage": 1},
    "multi": {"fcn_hidden": [32], "fcn_latent_dim": 4, "channels": [8, 16, 32], "cnn_latent_dim": 12},
    "geo": {"channels": [8, 16, 32], "view_size": 24},
}

torch.set_num_threads(min(2, os.cpu_count() or 1))


def require_faces_dev():
    if not (FACES_DEV / "trainingset.npy").is_file():
        pytest.skip(f"faces-dev benchmark not found at {FACES_DEV} (set AD_FACES_DEV to its folder)")


@pytest.fixture(scope="session")
def faces_dev():
    require_faces_dev()
    return FACES_DEV


@pytest.fixture(scope="session")
def train_faces(faces_dev):
    """600 normal faces spread over the training set (it is ordered by pose)."""
    images = np.load(faces_dev / "trainingset.npy", mmap_mode="r", allow_pickle=False)
    return np.array(images[np.linspace(0, len(images) - 1, 600).astype(int)])


@pytest.fixture(scope="session")
def test_slice(faces_dev):
    """60 images of each source: (images, labels, sources)."""
    images = np.load(faces_dev / "testingset.npy", mmap_mode="r", allow_pickle=False)
    sources = np.load(faces_dev / "testing_sources.npy", allow_pickle=False)
    index = np.sort(np.concatenate([np.flatnonzero(sources == s)[:60] for s in (NORMAL, UTKFACE, CIFAR)]))
    return np.array(images[index]), (sources[index] != NORMAL).astype(np.uint8), sources[index]


@pytest.fixture(scope="session")
def data_files(tmp_path_factory, train_faces, test_slice):
    """The slices written as HW8-layout files, as users have them."""
    folder = tmp_path_factory.mktemp("hw8")
    np.save(folder / "trainingset.npy", train_faces)
    images, labels, sources = test_slice
    np.save(folder / "testingset.npy", images)
    np.save(folder / "testing_labels.npy", labels)
    np.save(folder / "testing_sources.npy", sources)
    return folder
