"""Finding flaws on normal things: image ROC-AUC, pixel ROC-AUC and pixel AUPRO on an MVTec-layout folder.

Each row is one training recipe, run through the product's own training command on `train/good`
only, then evaluated on `test/` with the masks in `ground_truth/` (as `python -m ad evaluate
--images DATA/test` finds them): image ROC-AUC, pixel ROC-AUC and pixel AUPRO (up to 30% FPR),
overall and per kind of defect, and the training minutes on this machine. No row is tuned to a
data set: the first is `python train.py --data DATA/train/good --out DIR` with nothing else.

Usage: python -m benchmarks.defects [--data FOLDER] [--rows [NAME ...]] [--write-readme]
(`--rows` with no name runs nothing: with --write-readme it writes the saved rows.)
Each run adds its rows to benchmarks/defects_results.json (keyed by the data folder's name).
"""

import argparse
import json
import os
import shlex
import tempfile
import time
from pathlib import Path

import torch

from ad import checkpoint
from ad.data import load_test_set
from ad.evaluation import test_metrics
from ad.files import write_json
from ad.scoring import explain_all
from ad.training import train, train_config
from benchmarks import ROOT
from benchmarks.readme import markdown_table, publish

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tiles-dev"
RESULTS = ROOT / "benchmarks" / "defects_results.json"

# The autoencoders' general recipe for flaws: the whole picture (a flaw near a border must stay in
# view), 20 passes; their own sizes otherwise.
AUTOENCODER = {"fit": "whole", "epochs": 20}
ROWS = {
    "recommended (train.py defaults)": {},
    "seg (its own defaults: 128 px, the whole picture)": {"arch": "seg"},
    "duo (geo and seg in one, and a patch memory for its heat map; 128 px, the whole picture)": {"arch": "duo"},
    "seg with DRAEM's reconstructive network": {"arch": "seg", "model": {"reconstructor_width": 8}},
    "duo with seg's reconstructive network": {"arch": "duo", "model": {"seg": {"reconstructor_width": 8}}},
    "patch (a memory of normal neighbourhoods, 128 px, the whole picture)": {"arch": "patch"},
    "fcn": {"arch": "fcn", **AUTOENCODER},
    "cnn": {"arch": "cnn", **AUTOENCODER},
    "vae": {"arch": "vae", **AUTOENCODER},
    "resnet": {"arch": "resnet", **AUTOENCODER},
    "multi": {"arch": "multi", **AUTOENCODER},
    "geo without its surface memory (its heat map the score's gradient)": {"arch": "geo", "model": {"surface": None}},
    "geo on the centre square (the default before)": {"arch": "geo", "fit": "centre"},
}

# Published means on MVTec AD (another data set: 15 kinds of object and texture), for scale.
PUBLISHED = [  # (what, image ROC-AUC, pixel ROC-AUC, pixel AUPRO); None: not reported there
    ("AE-L2 (Bergmann et al., CVPR 2019, Table 3: mean of its per-category values), MVTec AD", None, 0.82, None),
    ("AE-SSIM (Bergmann et al., CVPR 2019, Table 3: mean of its per-category values), MVTec AD", None, 0.87, None),
    ("CutPaste 3-way (Li et al., CVPR 2021, Tables 1 and 2), MVTec AD", 0.952, 0.960, None),
    ("DRAEM (Zavrtanik et al., ICCV 2021, Tables 1 and 2), MVTec AD", 0.980, 0.973, None),
]
METRIC_COLUMNS = ("roc_auc", "pixel_roc_auc", "pixel_aupro")


def run_row(options, data, workdir):
    """Train one recipe on data/train/good and evaluate it on data/test with its masks."""
    out = Path(workdir) / "model"
    started = time.perf_counter()
    train(train_config(data=str(data / "train" / "good"), out=str(out), overwrite=True, **options))
    minutes = (time.perf_counter() - started) / 60
    model = checkpoint.load(out)
    test_set = load_test_set(data / "test", **model.input_format)
    scores, maps, _ = explain_all(model, test_set.images, desc="test set")
    metrics = test_metrics(test_set, scores, maps)
    return {**{key: metrics[key] for key in METRIC_COLUMNS}, "minutes": minutes, "options": options,
            "config": model.config, "threads": torch.get_num_threads(), "cores": os.cpu_count()}


def command(options):
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in options.items() if k != "model"]
    flags += [f"--set {shlex.quote(k + '=' + json.dumps(v).replace(' ', ''))}" for k, v in options.get("model", {}).items()]
    return f"`python train.py --data DATA/train/good --out DIR{''.join(' ' + f for f in flags)}`"


def format_table(results):
    kinds = sorted({kind for row in results.values() for kind in row["roc_auc"] if kind != "overall"})
    header = ["detector", "image ROC-AUC", "pixel ROC-AUC", "pixel AUPRO",
              *[f"{kind} (image / pixel / AUPRO)" for kind in kinds], "training"]
    rows = []
    for name, row in results.items():
        rows.append([f"**{name}**: {command(row['options'])}",
                     *[f"**{row[key]['overall']:.3f}**" for key in METRIC_COLUMNS],
                     *[" / ".join(f"{row[key].get(kind, float('nan')):.2f}" for key in METRIC_COLUMNS)
                       for kind in kinds],
                     f"{row['minutes']:.1f} min" + ("" if row.get("threads", 2) > 1 else " (1 thread)")])
    rows += [[f"published: {name}", *["-" if v is None else f"{v:.3f}" for v in values], *["-"] * len(kinds), "-"]
             for name, *values in PUBLISHED]
    return markdown_table(header, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an MVTec-layout folder")
    parser.add_argument("--rows", nargs="*", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    if args.rows and not (args.data / "train" / "good").is_dir():
        raise SystemExit(f"{args.data}: no train/good folder; expected MVTec AD's layout "
                         "(train/good, test/<kind>, ground_truth/<kind>)")
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results = saved.setdefault(args.data.name, {})
    for name in args.rows:
        print(f"== {name}", flush=True)
        with tempfile.TemporaryDirectory() as workdir:
            results[name] = run_row(ROWS[name], args.data, workdir)
        print({key: round(results[name][key]["overall"], 4) for key in METRIC_COLUMNS}, flush=True)
        write_json(RESULTS, saved)  # after each row: a long run keeps what it measured
    table = format_table({name: results[name] for name in ROWS if name in results})
    footnote = (f"`python -m benchmarks.defects --write-readme` on `{args.data.name}` ({os.cpu_count()} CPU cores, "
                "no GPU): each row trains from scratch on `train/good` only; the published rows are MVTec AD means "
                "(another data set), for scale.")
    publish("defects", table, footnote, args.write_readme)


if __name__ == "__main__":
    main()
