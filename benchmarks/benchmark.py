"""The benchmark: shipped detectors vs the reference recipes, accuracy and speed, in one table.

Usage: python -m benchmarks.benchmark [--data FOLDER] [--no-references | --reuse-references]
                                    [--write-readme]
FOLDER holds HW8's layout with labels: trainingset.npy, testingset.npy, testing_labels.npy and
optionally testing_sources.npy (default: ../shared/data/faces-dev). Training the references takes
about 45 minutes on 2 CPU cores; each run that trains them keeps their rows in
benchmarks/reference_results.json, which --reuse-references reads instead (they do not change
when the shipped checkpoints do).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ad import checkpoint
from ad.data import load_array, load_test_set, parse_source_names
from ad.evaluation import auc_by_source, rank_average, roc_auc
from ad.files import write_json
from ad.scoring import anomaly_scores
from benchmarks import ROOT
from benchmarks.readme import markdown_table, publish
from benchmarks.references import RECIPES, png_size_scores, reference_scores, train_reference
from benchmarks.speed import FULL_HW8_TEST_SET

REFERENCE_RESULTS = ROOT / "benchmarks" / "reference_results.json"
FACES_DEV_SOURCES = "1=UTKFace,2=CIFAR-10"  # faces-dev's source ids (its README)
SOURCE_NAMES = {"shuffled": "shuffled faces"}
SHUFFLED = "shuffled"  # a synthetic source: normal faces cut in 16x16 tiles and shuffled


def shuffled_faces(images, seed=0):
    """Anomalies more complex than the faces they come from (more edges, same colours): a check
    that a detector does not merely flag simple images, as the PNG-size baseline does."""
    rng = np.random.default_rng(seed)
    tiles = images.reshape(len(images), 4, 16, 4, 16, 3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, 16, 16, 16, 3)
    shuffled = np.stack([t[rng.permutation(16)] for t in tiles])
    return shuffled.reshape(-1, 4, 4, 16, 16, 3).transpose(0, 1, 3, 2, 4, 5).reshape(images.shape)


def folder_mb(folder):
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file()) / 1024**2


def timed_scores(score, images):
    started = time.perf_counter()
    scores = score(images)
    return scores, len(images) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces-dev"))
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    references = parser.add_mutually_exclusive_group()
    references.add_argument("--no-references", action="store_true", help="leave the references out")
    references.add_argument("--reuse-references", action="store_true",
                            help=f"the reference rows of the last full run ({REFERENCE_RESULTS.name})")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    data = Path(args.data)

    test, labels, sources, hw8 = read_test_set(data)

    def accuracy(scores):
        """ROC-AUC per source; "overall" on the HW8 test set alone, without the shuffled faces."""
        result = auc_by_source(labels, scores, sources)
        result["overall"] = roc_auc(labels[hw8], scores[hw8])
        return result

    rows = shipped_rows(args.checkpoints, test, accuracy)
    scores, throughput = timed_scores(png_size_scores, test)
    rows.append({"detector": "no model: minus PNG size", "auc": accuracy(scores),
                 "throughput": throughput})
    if args.reuse_references:
        rows += reused_reference_rows(data, len(test))
    elif not args.no_references:
        measured = reference_rows(load_array(data / "trainingset.npy"), test, accuracy)
        write_json(REFERENCE_RESULTS, {"data": data.name, "test_images": len(test), "rows": measured})
        rows += measured
    publish("benchmark", format_rows(rows), footnote(args, len(test)), args.write_readme)


def read_test_set(data):
    """(images, labels, sources, which are HW8's): the test set, plus half its normal faces shuffled."""
    sources_file = data / "testing_sources.npy"
    test_set = load_test_set(data / "testingset.npy", data / "testing_labels.npy",
                             sources_file if sources_file.exists() else None, FACES_DEV_SOURCES)
    test, labels = np.asarray(test_set.images), test_set.labels
    sources = test_set.sources.astype(str) if test_set.sources is not None else np.full(len(test), "anomaly")
    normal = test[labels == 0]
    extra = shuffled_faces(normal[: len(normal) // 2])
    hw8 = np.arange(len(test) + len(extra)) < len(test)
    return (np.concatenate([test, extra]), np.concatenate([labels, np.ones(len(extra), dtype=labels.dtype)]),
            np.concatenate([sources, np.full(len(extra), SHUFFLED)]), hw8)


def shipped_rows(folder, test, accuracy):
    """A row per shipped checkpoint, then their mean-rank ensembles."""
    rows, shipped_scores = [], {}
    for name, path in checkpoint.find(folder).items():
        model = checkpoint.load(path)
        scores, throughput = timed_scores(lambda x, model=model: anomaly_scores(model, x), test)
        shipped_scores[name] = scores
        rows.append({"detector": f"**{name}** (shipped)", "auc": accuracy(scores),
                     "params": model.parameter_count(), "size_mb": folder_mb(path),
                     "train_s": model.training_record["history"][-1]["seconds"], "throughput": throughput})
    if len(shipped_scores) > 1:
        rows.append({"detector": "**ensemble** of the above (mean rank)",
                     "auc": accuracy(rank_average(list(shipped_scores.values())))})
    if {"geo", "fcn"} <= set(shipped_scores):  # the best self-supervised and the best autoencoder
        rows.append({"detector": "**ensemble** geo + fcn (mean rank)",
                     "auc": accuracy(rank_average([shipped_scores["geo"], shipped_scores["fcn"]]))})
    return rows


def reference_rows(train, test, accuracy):
    """A row per reference recipe, each trained here on the training images."""
    rows = []
    for name in RECIPES:
        started = time.perf_counter()
        model, view = train_reference(name, train)
        train_s = time.perf_counter() - started
        scores, throughput = timed_scores(lambda x, m=model, v=view: reference_scores(m, v, x), test)
        rows.append({"detector": f"reference: {name}", "auc": accuracy(scores),
                     "params": sum(p.numel() for p in model.parameters()),
                     "train_s": train_s, "throughput": throughput})
    return rows


def reused_reference_rows(data, test_images):
    try:
        saved = json.loads(REFERENCE_RESULTS.read_text())
    except FileNotFoundError:
        sys.exit(f"{REFERENCE_RESULTS} does not exist yet: run once without --reuse-references")
    if saved["test_images"] != test_images or saved["data"] != data.name:
        sys.exit(f"{REFERENCE_RESULTS} was measured on {saved['data']} ({saved['test_images']} test "
                 f"images), not on {data} ({test_images}): run without --reuse-references")
    names = parse_source_names(FACES_DEV_SOURCES)  # rows saved before sources were named keep their ids
    return [{**row, "auc": {names.get(k, k): v for k, v in row["auc"].items()}} for row in saved["rows"]]


def format_rows(rows):
    subsets = [k for k in rows[0]["auc"] if k != "overall"]
    header = ["detector", "ROC-AUC overall"] + [f"normal vs {SOURCE_NAMES.get(k, k)}" for k in subsets] + [
        "parameters", "checkpoint", "training", "batch scoring",
        f"{FULL_HW8_TEST_SET:,} images"]
    lines = []
    for row in rows:
        cells = [row["detector"]] + [f"{row['auc'][k]:.3f}" for k in ["overall", *subsets]]
        cells.append(f"{row['params'] / 1e6:.2f} M" if "params" in row else "-")
        cells.append(f"{row['size_mb']:.1f} MB" if "size_mb" in row else "-")
        cells.append(f"{row['train_s'] / 60:.1f} min" if "train_s" in row else "-")
        cells.append(f"{row['throughput']:,.0f} img/s" if "throughput" in row else "-")
        cells.append(f"{FULL_HW8_TEST_SET / row['throughput']:.1f} s" if "throughput" in row else "-")
        lines.append(cells)
    return markdown_table(header, lines)


def footnote(args, count):
    command = "python -m benchmarks.benchmark" + (" --reuse-references" if args.reuse_references else "")
    references = (f"for the references, measured by the last full run ({REFERENCE_RESULTS.name})"
                  if args.reuse_references else "for the references, measured here")
    return (f"`{command} --write-readme` on {count:,} test images, "
            f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, no GPU. "
            "Training times are those recorded in each checkpoint's training.json (on the same "
            f"machine) or, {references}; the last column extrapolates batch scoring to HW8's "
            "full test set (benchmarks/speed.py times it whole).")


if __name__ == "__main__":
    main()
