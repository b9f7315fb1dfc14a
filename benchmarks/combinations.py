"""How duo should combine its two members' scores, measured on both kinds of problem at once.

One duo is trained per data set through train.py's code path: the defect set at duo's defaults
(the whole picture, 128 px), and one class each of Fashion-MNIST and CIFAR-100 at 64 px (the
resolution those sets have). Its members' test scores are recorded once; each rule below combines
them afterwards. A rule earns its place by serving flaws and unlike things alike, never by one data
set's figures: duo's own rule (Fisher's method) is the last row.

Usage: python -m benchmarks.combinations [--defects FOLDER] [--cifar100 FOLDER] [--checkpoints DIR]
                                         [--write-readme]
(--cifar100: as benchmarks.oneclass reads it; without it that column is left out. --checkpoints keeps
the trained duos there, and a later run reuses them.)
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ad import checkpoint
from ad.data import load_test_set, standardize_images
from ad.evaluation import roc_auc
from ad.models.base import CALIBRATION_POINTS, TAIL_AT
from ad.scoring import anomaly_scores
from ad.training import train, train_config
from benchmarks.defects import DEFAULT_DATA
from benchmarks.oneclass_data import DATASETS
from benchmarks.readme import markdown_table, publish

ONE_CLASS = 0  # Fashion-MNIST's T-shirt/top, CIFAR-100's aquatic mammals: the first of each, not a chosen one
MEDIAN = (CALIBRATION_POINTS - 1) // 2  # index of the stored 50% quantile
DUOS_RULE = "**duo's: Fisher's method, the sum of their surprises**"


def normal_scaled(member, scores):
    """0 at the median held-out normal image, 1 at the 99th percentile."""
    quantiles = member.normal_score_quantiles.numpy()
    return (scores - quantiles[MEDIAN]) / max(quantiles[TAIL_AT] - quantiles[MEDIAN], 1e-12)


def rules(duo, geo, seg):
    """name -> combined scores, from the members' raw test scores."""
    surprise = {name: member.surprise(torch.as_tensor(scores)).numpy()
                for name, member, scores in (("geo", duo.geo, geo), ("seg", duo.seg, seg))}
    a, b = normal_scaled(duo.geo, geo), normal_scaled(duo.seg, seg)
    return {
        "geo's part alone": geo,
        "seg's part alone": seg,
        "the larger of the two, each 0 at its normal median and 1 at its 99th percentile": np.maximum(a, b),
        "the sum of the same": a + b,
        "the larger of their surprises, -ln(share of normal images at least as high)": np.maximum(*surprise.values()),
        "the larger of geo's normal-scaled score and seg's less 1 (seg counts only past its 99th percentile)":
            np.maximum(a, b - 1),
        DUOS_RULE: sum(surprise.values()),
    }


def trained_duo(folder, data, **options):
    """A duo trained on `data` into `folder`, or the one already there."""
    if not (folder / "config.json").exists():
        train(train_config(data=str(data), out=str(folder), arch="duo", overwrite=True, **options))
    return checkpoint.load(folder)


def defects_column(folder, data):
    model = trained_duo(folder, data / "train" / "good")
    test_set = load_test_set(data / "test", **model.input_format)
    return model, test_set.images, test_set.labels


def one_class_column(folder, dataset, data, workdir):
    train_images, train_labels, test_images, test_labels = dataset.load(data)
    normal = Path(workdir) / "class.npy"
    np.save(normal, train_images[train_labels == ONE_CLASS])
    model = trained_duo(folder, normal, image_size=64)
    return model, standardize_images(test_images, "test", size=model.image_size, fit=model.fit), \
        (test_labels != ONE_CLASS).astype(int)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--defects", type=Path, default=DEFAULT_DATA, help="an MVTec-layout folder")
    parser.add_argument("--cifar100", type=Path, help="CIFAR-100, as benchmarks.oneclass reads it")
    parser.add_argument("--checkpoints", type=Path, help="keep the trained duos here (and reuse them)")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    fashion = DATASETS["fashion-mnist"]
    with tempfile.TemporaryDirectory() as workdir:
        keep = args.checkpoints or Path(workdir)
        columns = {args.defects.name: lambda: defects_column(keep / "defects", args.defects),
                   f"Fashion-MNIST class {ONE_CLASS}": lambda: one_class_column(
                       keep / "fashion-mnist", fashion, fashion.default_folder, workdir)}
        if args.cifar100:
            columns[f"CIFAR-100 superclass {ONE_CLASS}"] = lambda: one_class_column(
                keep / "cifar100", DATASETS["cifar100"], args.cifar100, workdir)
        results = {}
        for column, build in columns.items():
            print(f"== {column}", flush=True)
            duo, images, labels = build()
            geo, seg = anomaly_scores(duo.geo, images), anomaly_scores(duo.seg, images)
            for rule, scores in rules(duo, geo, seg).items():
                results.setdefault(rule, {})[column] = roc_auc(labels, scores)
    table = markdown_table(["how geo's and seg's scores are combined (image ROC-AUC)", *columns],
                           [[rule, *(f"{row[c]:.3f}" for c in columns)] for rule, row in results.items()])
    flags = " --cifar100 FOLDER" if args.cifar100 else ""
    footnote = (f"`python -m benchmarks.combinations{flags} --write-readme` ({os.cpu_count()} CPU cores): one duo "
                "trained per data set (Fashion-MNIST and CIFAR-100 tested on all 10,000 test images), its members' "
                "test scores combined by each rule.")
    publish("combinations", table, footnote, args.write_readme)


if __name__ == "__main__":
    main()
