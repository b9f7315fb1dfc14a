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
# Each superclass's five fine classes, as the PNG repository names their folders (CIFAR-100's own table)
CIFAR100_MEMBERS = [
    "beaver dolphin otter seal whale", "aquarium_fish flatfish ray shark trout",
    "orchid poppy rose sunflower tulip", "bottle bowl can cup plate", "apple mushroom orange pear sweet_pepper",
    "clock keyboard lamp telephone television", "bed chair couch table wardrobe",
    "bee beetle butterfly caterpillar cockroach", "bear leopard lion tiger wolf",
    "bridge castle house road skyscraper", "cloud forest mountain plain sea",
    "camel cattle chimpanzee elephant kangaroo", "fox porcupine possum raccoon skunk",
    "crab lobster snail spider worm", "baby boy girl man woman", "crocodile dinosaur lizard snake turtle",
    "hamster mouse rabbit shrew squirrel", "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "bicycle bus motorcycle pickup_truck train", "lawn_mower rocket streetcar tank tractor"]
CIFAR100_FILES = ("cifar100_train_x.npy", "cifar100_train_coarse.npy", "cifar100_test_x.npy",
                  "cifar100_test_coarse.npy")
CIFAR100_HOWTO = ("pass --data a clone of the public CIFAR-100 PNG repository (github.com/cyizhuo/CIFAR-100-dataset: "
                  "train/<class>/*.png, test/<class>/*.png), or a folder of arrays built from it: "
                  f"{', '.join(CIFAR100_FILES)}")


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


def read_cifar100_pngs(folder):
    """The PNG repository's train/ and test/ trees -> the four arrays (images in file-name order)."""
    from PIL import Image
    arrays = []
    for split in ("train", "test"):
        images, labels = [], []
        for superclass, members in enumerate(CIFAR100_MEMBERS):
            for fine in members.split():
                files = sorted((Path(folder) / split / fine).glob("*.png"))
                if not files:
                    raise SystemExit(f"{folder}: no {split}/{fine}/*.png; {CIFAR100_HOWTO}")
                for file in files:
                    with Image.open(file) as image:
                        if image.size != (32, 32):
                            raise SystemExit(f"{file}: {image.size[0]}x{image.size[1]}; expected a 32x32 CIFAR photo")
                        images.append(np.asarray(image.convert("RGB")))
                labels += [superclass] * len(files)
        arrays += [np.stack(images), np.array(labels, dtype=np.uint8)]
    return arrays


def load_cifar100(folder):
    """(train images, train superclasses, test images, test superclasses), checked: from the PNG
    repository's trees or from the four arrays; a missing folder or file says what is expected."""
    if folder is None:
        raise SystemExit(f"CIFAR-100 needs --data FOLDER: {CIFAR100_HOWTO}")
    if (Path(folder) / "train").is_dir():
        return check_cifar100(read_cifar100_pngs(folder))
    missing = [name for name in CIFAR100_FILES if not (Path(folder) / name).is_file()]
    if missing:
        raise SystemExit(f"{folder}: no train/ folder of PNGs, nor {', '.join(missing)}; {CIFAR100_HOWTO}")
    return check_cifar100([np.load(Path(folder) / name, allow_pickle=False) for name in CIFAR100_FILES])


def check_cifar100(arrays):
    """The four arrays, checked: 32x32 colour photos, each with a superclass."""
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
