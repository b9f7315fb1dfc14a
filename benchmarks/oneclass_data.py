"""The one-class benchmark's data sets: Fashion-MNIST's IDX files and CIFAR-100's superclass arrays."""

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist installs
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
# CIFAR-100's 20 superclasses ("coarse labels"), in the official order of its coarse_label_names
CIFAR100_SUPERCLASSES = [
    "aquatic mammals", "fish", "flowers", "food containers", "fruit and vegetables",
    "household electrical devices", "household furniture", "insects", "large carnivores",
    "large man-made outdoor things", "large natural outdoor scenes", "large omnivores and herbivores",
    "medium-sized mammals", "non-insect invertebrates", "people", "reptiles", "small mammals", "trees",
    "vehicles 1", "vehicles 2"]
CIFAR100_FILES = ("cifar100_train_x.npy", "cifar100_train_coarse.npy", "cifar100_test_x.npy",
                  "cifar100_test_coarse.npy")
CIFAR100_HOWTO = ("see the data's README; build the arrays with make_cifar100.py from the CIFAR-100 PNG "
                  "repository, then pass their folder as --data")


def read_idx(path):
    """An IDX file (the MNIST family's format; gzipped or not) -> numpy array."""
    with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    values = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {values.size} values for shape {shape}; the file is truncated")
    return values.reshape(shape)


def load_fashion_mnist(folder):
    """(train images, train labels, test images, test labels) from the four IDX files."""
    def find(stem):
        for name in (f"{stem}.gz", stem):
            if (Path(folder) / name).is_file():
                return Path(folder) / name
        raise SystemExit(f"{folder}: no {stem}(.gz); install Debian's dataset-fashion-mnist or pass --data")
    return tuple(read_idx(find(stem)) for stem in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))


def load_cifar100(folder):
    """(train images, train superclasses, test images, test superclasses): the four arrays that
    make_cifar100.py writes, checked; a missing folder or file says how to build them."""
    if folder is None:
        raise SystemExit(f"CIFAR-100 needs --data FOLDER: {CIFAR100_HOWTO}")
    missing = [name for name in CIFAR100_FILES if not (Path(folder) / name).is_file()]
    if missing:
        raise SystemExit(f"{folder}: no {', '.join(missing)}; {CIFAR100_HOWTO}")
    arrays = [np.load(Path(folder) / name, allow_pickle=False) for name in CIFAR100_FILES]
    train_x, train_y, test_x, test_y = arrays
    for split, images, labels in (("train", train_x, train_y), ("test", test_x, test_y)):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
            raise SystemExit(f"cifar100_{split}_x.npy: {images.dtype} {images.shape}; expected (N, 32, 32, 3) uint8")
        if labels.shape != (len(images),) or (labels.size and labels.max() >= len(CIFAR100_SUPERCLASSES)):
            raise SystemExit(f"cifar100_{split}_coarse.npy: {labels.shape}; expected {len(images)} superclass "
                             f"labels from 0 to {len(CIFAR100_SUPERCLASSES) - 1}")
    return tuple(arrays)


@dataclass(frozen=True)
class Dataset:
    """One data set of the protocol: what its classes are, how it is read, what was published on it."""

    title: str
    classes: list
    load: object  # folder -> (train images, train labels, test images, test labels)
    default_folder: Path | None
    training_images: str  # how many images one class trains on, for the README's footnote
    published: list  # (paper and table, mean ROC-AUC in %)
    note: str = ""  # about the published figures


DATASETS = {
    "fashion-mnist": Dataset("Fashion-MNIST", FASHION_CLASSES, load_fashion_mnist, DEBIAN_FOLDER,
                             "one class's 6,000 images",
                             [("GEOM (Golan and El-Yaniv, NeurIPS 2018, Table 1)", 93.5)]),
    "cifar100": Dataset("CIFAR-100 superclasses", CIFAR100_SUPERCLASSES, load_cifar100, None,
                        "one superclass's 2,500 images",
                        [("GEOM (Golan and El-Yaniv 2018)", 78.7), ("CSI (Tack et al. 2020, Table 1(b))", 89.6)],
                        "The published CIFAR-100 figures are as listed by secondary sources; not checked "
                        "against the papers' tables here."),
}
