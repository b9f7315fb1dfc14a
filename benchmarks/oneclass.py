"""The field's one-class benchmark, run through the product's own training command: Fashion-MNIST
and CIFAR-100's superclasses.

For each class: train on that class's training images only (Fashion-MNIST: 6,000; a CIFAR-100
superclass: 2,500), test on all 10,000 test images (that class normal, every other anomalous),
report ROC-AUC per class and the mean. Each row is one recipe for every class of both data sets,
never tuned per class or per data set; the images go through the normal path (28x28 grey or 32x32
colour -> RGB 64x64), exactly as `python train.py --data CLASS.npy` reads them.

Usage: python -m benchmarks.oneclass [--dataset fashion-mnist|cifar100] [--data FOLDER]
                                    [--rows [NAME ...]] [--classes 0 1 ...] [--write-readme]
(`--rows` with no name runs nothing: with --write-readme it writes the saved rows.)
Fashion-MNIST's FOLDER holds the four IDX files (gzipped or not); Debian's `dataset-fashion-mnist`
package puts them in the default folder. CIFAR-100's is a clone of the public PNG repository
(github.com/cyizhuo/CIFAR-100-dataset) or holds cifar100_{train,test}_x.npy and
cifar100_{train,test}_coarse.npy made from it. Each run adds its rows to
benchmarks/oneclass_results.json (by data set), and --write-readme writes every saved row of both
into README, beside the published results.
"""

import argparse
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
from benchmarks.oneclass_data import DATASETS, FASHION_CLASSES, load_fashion_mnist, read_idx  # noqa: F401
from benchmarks.readme import markdown_table, publish

RESULTS = ROOT / "benchmarks" / "oneclass_results.json"
SECTIONS = {"fashion-mnist": "oneclass", "cifar100": "oneclass-cifar100"}  # README's markers
COMMANDS = {"fashion-mnist": "python -m benchmarks.oneclass",
            "cifar100": "python -m benchmarks.oneclass --dataset cifar100 --data FOLDER"}

# Each row: train.py's options for every class. The first is `python train.py --data X --out Y`
# with nothing else: the recommended general detector with its defaults.
# The autoencoders read the whole image at 32 px (a 28 px garment or a 32 px photo has no more detail)
# with a 32-d code, for 20 epochs: a general recipe, not tuned per class.
AUTOENCODER = {"epochs": 20, "model": {"input_size": 32, "latent_dim": 32}}
ROWS = {
    "recommended (train.py defaults)": {},
    "geo without its memory (the default before: its cross-entropies score)": {"model": {"memory_size": 0}},
    "geo trained for at least 200 steps (the default at least 100)": {"min_steps": 200},
    "geo, the whole image turned (4 views)": {"model": {"windows": [[0, 0, 64, 64]]}},
    "fcn": {"arch": "fcn", "epochs": 20, "model": {"input_size": 32, "latent_dim": 32}},
    "cnn": {"arch": "cnn", **AUTOENCODER},
    "vae": {"arch": "vae", **AUTOENCODER},
    "resnet": {"arch": "resnet", **AUTOENCODER},
    "multi": {"arch": "multi", "epochs": 20, "model": {"input_size": 32, "fcn_latent_dim": 16, "cnn_latent_dim": 16}},
}


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


def run_row(options, classes, train_x, train_y, test_x, test_y, names=FASHION_CLASSES):
    """One recipe on each of `classes` (indices into `names`); -> the row saved in the results."""
    test_images = standardize_images(test_x, "test images")  # once, for every class
    per_class, seconds = {}, []
    with tempfile.TemporaryDirectory() as workdir:
        for c in classes:
            per_class[c], spent = run_class(options, c, train_x, train_y, test_images, test_y, workdir)
            seconds.append(spent)
            print(f"class {c} ({names[c] if c < len(names) else c}): ROC-AUC {per_class[c]:.4f}, "
                  f"{spent / 60:.1f} min", flush=True)
    return {"per_class": {str(c): auc for c, auc in per_class.items()},
            "mean": float(np.mean(list(per_class.values()))), "minutes_per_class": float(np.mean(seconds)) / 60,
            "options": options, "threads": torch.get_num_threads(), "cores": os.cpu_count(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def read_results(path=RESULTS):
    """The saved rows by data set; a file of the first layout (Fashion-MNIST's rows alone) reads as that."""
    results = json.loads(path.read_text()) if path.exists() else {}
    if any("per_class" in row for row in results.values()):
        results = {"fashion-mnist": results}
    return results


def command(options):
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in options.items() if k != "model"]
    flags += [f"--set {k}={json.dumps(v).replace(' ', '')}" for k, v in options.get("model", {}).items()]
    return f"`python train.py --data CLASS.npy --out DIR{''.join(' ' + f for f in flags)}`"


def format_table(results, dataset=DATASETS["fashion-mnist"]):
    """The rows (name -> saved row) of one data set, every class a column, then its published means."""
    classes = dataset.classes
    header = ["detector", "mean ROC-AUC", *[f"{i} {name}" for i, name in enumerate(classes)], "training per class"]
    rows = []
    for name, row in results.items():
        complete = len(row["per_class"]) == len(classes)
        rows.append([f"**{name}**: {command(row['options'])}",
                     f"**{row['mean']:.3f}**" if complete else f"({row['mean']:.3f}, {len(row['per_class'])} classes)",
                     *[f"{row['per_class'][str(i)]:.3f}" if str(i) in row["per_class"] else "-"
                       for i in range(len(classes))],
                     f"{row['minutes_per_class']:.1f} min" + ("" if row.get("threads", 2) > 1 else " (1 thread)")])
    rows += [[f"published: {name}", f"{mean / 100:.3f}", *["-"] * len(classes), "-"] for name, mean in dataset.published]
    return markdown_table(header, rows)


def readme_section(key, rows):
    """(table, footnote) of one data set's README section: its measured rows, or a note that none are yet."""
    dataset = DATASETS[key]
    table = format_table({name: rows[name] for name in ROWS if name in rows}, dataset)
    if not rows:
        return f"(not yet measured: run `{COMMANDS[key]} --write-readme`)\n\n{table}", dataset.note
    cores = max((row.get("cores") or 0 for row in rows.values()), default=0) or os.cpu_count()
    devices = sorted({row.get("device", "cpu") for row in rows.values()} - {"cpu"})
    footnote = (f"`{COMMANDS[key]} --write-readme` on {cores} CPU cores, "
                + (f"GPU: {', '.join(devices)}" if devices else "no GPU")
                + " (torch on all cores, unless the row says 1 thread: it ran beside other work); every row "
                f"trains from scratch on {dataset.training_images} and tests on all 10,000.")
    return table, footnote + (f" {dataset.note}" if dataset.note else "")


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=list(DATASETS), default="fashion-mnist")
    parser.add_argument("--data", help="the data set's folder (Fashion-MNIST: default "
                        f"{DATASETS['fashion-mnist'].default_folder})")
    parser.add_argument("--rows", nargs="*", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--classes", nargs="+", type=int, help="default: every class of the data set")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args(argv)
    count = len(DATASETS[args.dataset].classes)
    args.classes = list(range(count)) if args.classes is None else args.classes
    if not all(0 <= c < count for c in args.classes):
        parser.error(f"--classes: {args.dataset} has classes 0 to {count - 1}")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    dataset = DATASETS[args.dataset]
    data = dataset.load(args.data or dataset.default_folder) if args.rows else None  # a missing set exits here
    results = read_results()
    for name in args.rows:
        print(f"== {name} on {dataset.title}", flush=True)
        results.setdefault(args.dataset, {})[name] = run_row(ROWS[name], args.classes, *data, names=dataset.classes)
        write_json(RESULTS, results)  # after each row: a long run keeps what it measured
    for key in DATASETS if args.write_readme else [args.dataset]:
        publish(SECTIONS[key], *readme_section(key, results.get(key, {})), args.write_readme)


if __name__ == "__main__":
    main()
