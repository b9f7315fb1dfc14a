"""The field's one-class benchmark on Fashion-MNIST, run through the product's own training command.

For each of the 10 classes: train on that class's 6,000 training images only, test on all 10,000
test images (that class normal, the nine others anomalous), report ROC-AUC per class and the mean.
Each row is one recipe for all ten classes, never tuned per class; the images go through the
normal path (28x28 grey -> RGB 64x64), exactly as `python train.py --data CLASS.npy` reads them.

Usage: python -m benchmarks.oneclass [--data FOLDER] [--rows [NAME ...]] [--classes 0 1 ...]
                                    [--write-readme]
(`--rows` with no name runs nothing: with --write-readme it writes the saved rows.)
FOLDER holds the four IDX files (gzipped or not); Debian's `dataset-fashion-mnist` package puts
them in the default folder. Each run adds its rows to benchmarks/oneclass_results.json, and
--write-readme writes every saved row into README, beside the published results.
"""

import argparse
import gzip
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ad import checkpoint
from ad.data import standardize_images
from ad.evaluation import roc_auc
from ad.files import write_json
from ad.scoring import anomaly_scores
from ad.training import train, train_config
from benchmarks import ROOT
from benchmarks.readme import markdown_table, publish

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist installs
RESULTS = ROOT / "benchmarks" / "oneclass_results.json"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]

# Each row: train.py's options for every class. The first is `python train.py --data X --out Y`
# with nothing else: the recommended general detector with its defaults.
# The autoencoders read the whole image at 32 px (a 28 px digit or garment has no more detail)
# with a 32-d code, for 20 epochs: a general recipe, not tuned per class.
AUTOENCODER = {"epochs": 20, "model": {"input_size": 32, "latent_dim": 32}}
ROWS = {
    "recommended (train.py defaults)": {},
    "geo, the whole image turned (4 views)": {"model": {"windows": [[0, 0, 64, 64]]}},
    "fcn": {"arch": "fcn", "epochs": 20, "model": {"input_size": 32, "latent_dim": 32}},
    "cnn": {"arch": "cnn", **AUTOENCODER},
    "vae": {"arch": "vae", **AUTOENCODER},
    "resnet": {"arch": "resnet", **AUTOENCODER},
    "multi": {"arch": "multi", "epochs": 20, "model": {"input_size": 32, "fcn_latent_dim": 16, "cnn_latent_dim": 16}},
}

# Mean ROC-AUC (%) published for the same protocol on Fashion-MNIST, with where it is printed.
PUBLISHED = [
    ("GEOM (Golan and El-Yaniv, NeurIPS 2018, Table 1)", 93.5),
]


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


def run_class(options, normal_class, train_x, train_y, test_images, test_y, workdir):
    """Train one recipe on one class as train.py does; -> (ROC-AUC, training seconds)."""
    data = Path(workdir) / f"class{normal_class}.npy"
    np.save(data, train_x[train_y == normal_class])
    out = Path(workdir) / f"class{normal_class}-model"
    started = time.perf_counter()
    train(train_config(data=str(data), out=str(out), overwrite=True, **options))
    seconds = time.perf_counter() - started
    scores = anomaly_scores(checkpoint.load(out), test_images)
    return roc_auc((test_y != normal_class).astype(int), scores), seconds


def run_row(options, classes, train_x, train_y, test_x, test_y):
    test_images = standardize_images(test_x, "test images")  # once, for every class
    per_class, seconds = {}, []
    with tempfile.TemporaryDirectory() as workdir:
        for c in classes:
            per_class[c], spent = run_class(options, c, train_x, train_y, test_images, test_y, workdir)
            seconds.append(spent)
            print(f"class {c} ({CLASSES[c] if c < len(CLASSES) else c}): ROC-AUC {per_class[c]:.4f}, "
                  f"{spent / 60:.1f} min", flush=True)
    return {"per_class": {str(c): auc for c, auc in per_class.items()},
            "mean": float(np.mean(list(per_class.values()))), "minutes_per_class": float(np.mean(seconds)) / 60,
            "options": options, "threads": torch.get_num_threads(), "cores": os.cpu_count()}


def command(options):
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in options.items() if k != "model"]
    flags += [f"--set {k}={json.dumps(v).replace(' ', '')}" for k, v in options.get("model", {}).items()]
    return f"`python train.py --data CLASS.npy --out DIR{''.join(' ' + f for f in flags)}`"


def format_table(results):
    header = ["detector", "mean ROC-AUC", *[f"{i} {name}" for i, name in enumerate(CLASSES)],
              "training per class"]
    rows = []
    for name, row in results.items():
        complete = len(row["per_class"]) == len(CLASSES)
        rows.append([f"**{name}**: {command(row['options'])}",
                     f"**{row['mean']:.3f}**" if complete else f"({row['mean']:.3f}, {len(row['per_class'])} classes)",
                     *[f"{row['per_class'][str(i)]:.3f}" if str(i) in row["per_class"] else "-"
                       for i in range(len(CLASSES))],
                     f"{row['minutes_per_class']:.1f} min" + ("" if row.get("threads", 2) > 1 else " (1 thread)")])
    rows += [[f"published: {name}", f"{mean / 100:.3f}", *["-"] * len(CLASSES), "-"] for name, mean in PUBLISHED]
    return markdown_table(header, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEBIAN_FOLDER))
    parser.add_argument("--rows", nargs="*", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--classes", nargs="+", type=int, default=list(range(len(CLASSES))))
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data = load_fashion_mnist(args.data) if args.rows else None
    for name in args.rows:
        print(f"== {name}", flush=True)
        results[name] = run_row(ROWS[name], args.classes, *data)
        write_json(RESULTS, results)  # after each row: a long run keeps what it measured
    table = format_table({name: results[name] for name in ROWS if name in results})
    footnote = (f"`python -m benchmarks.oneclass --write-readme` on {os.cpu_count()} CPU cores, no GPU (torch on "
                "both, unless the row says 1 thread: it ran beside other work); every row trains from scratch on "
                "one class's 6,000 images and tests on all 10,000.")
    publish("oneclass", table, footnote, args.write_readme)


if __name__ == "__main__":
    main()
