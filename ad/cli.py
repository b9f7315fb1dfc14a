"""Command line: `python -m ad train | score | evaluate | push` (train.py is `ad train`)."""

import argparse
import json
import shlex
import sys
from pathlib import Path

from ad.data import InputError, load_images, load_labels, load_sources, parse_crop
from ad.models import list_models, load_model
from ad.scoring import CPU_BATCH_SIZE, GPU_BATCH_SIZE, anomaly_scores

BATCH_SIZE_HELP = f"default: {CPU_BATCH_SIZE} on CPU, {GPU_BATCH_SIZE} on GPU"


def add_train_arguments(parser):
    parser.add_argument("--arch", required=True, choices=list_models(), help="architecture")
    parser.add_argument("--data", required=True, help="trainingset.npy: uint8 (N, 64, 64, 3) normal images")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine schedule)")
    parser.add_argument("--crop", type=parse_crop, help="TOP,LEFT,HEIGHT,WIDTH box on the 64x64 "
                        "image, resized back to 64 before the model (saved in the checkpoint)")
    parser.add_argument("--set", dest="model", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture option, JSON value, e.g. --set latent_dim=8 --set hidden=[256,32]")
    parser.add_argument("--holdout", type=float, default=0.05, help="share of images held out to calibrate")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="no left-right flips")
    parser.add_argument("--limit", type=int, help="use only N training images, spread evenly over the file")
    parser.add_argument("--test", help="testingset.npy to report ROC-AUC on after training")
    parser.add_argument("--labels", help="test labels (.npy or .csv): 0 normal, 1 anomaly")
    parser.add_argument("--sources", help="test source ids (.npy or .csv) for per-source ROC-AUC")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="continue the unfinished run in --out, with the settings it started with")
    parser.add_argument("--overwrite", action="store_true", help="replace the checkpoint in --out")
    parser.add_argument("--push-to-hub", metavar="USER/NAME", help="upload the finished checkpoint")
    add_push_options(parser)


def add_push_options(parser):
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--revision", help="Hub branch to push to (created if missing)")


def parse_model_options(pairs):
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--set '{pair}': expected KEY=VALUE, e.g. latent_dim=16")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def run_train(args, argv):
    from ad.training import TrainConfig, train  # torch.distributed and friends load only here

    cfg = TrainConfig(
        arch=args.arch, data=args.data, out=args.out, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, crop=args.crop, holdout=args.holdout, flip=args.flip, limit=args.limit,
        seed=args.seed, model=parse_model_options(args.model), test=args.test, labels=args.labels,
        sources=args.sources, resume=args.resume, overwrite=args.overwrite,
        command="python train.py " + shlex.join(argv))
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    train(cfg)
    if args.push_to_hub and _is_main_process():
        from ad.hub import push
        print(push(args.out, args.push_to_hub, private=args.private, revision=args.revision))


def _is_main_process():
    import os
    return os.environ.get("RANK", "0") == "0"


def run_score(args):
    from ad.evaluation import write_submission

    model = load_model(args.checkpoint, device=_device())
    images, _ = load_images(args.images)
    scores = anomaly_scores(model, images, batch_size=args.batch_size)
    write_submission(args.out, scores)
    print(f"wrote {len(scores)} scores to {args.out}")


def run_evaluate(args):
    from ad.evaluation import auc_by_source, format_table, rank_average

    images, names = load_images(args.images)
    labels, sources = load_labels(args.labels, names)
    if args.sources:
        sources = load_sources(args.sources, len(images))
    results, all_scores = {}, []
    for checkpoint in args.checkpoint:
        model = load_model(checkpoint, device=_device())
        scores = anomaly_scores(model, images, batch_size=args.batch_size)
        all_scores.append(scores)
        results[_model_name(checkpoint, results)] = auc_by_source(labels, scores, sources)
    if len(all_scores) > 1:
        results["ensemble"] = auc_by_source(labels, rank_average(all_scores), sources)
    print(json.dumps(results, indent=2) if args.json else format_table(results))


def run_push(args):
    from ad.hub import push
    print(push(args.checkpoint, args.repo, private=args.private, revision=args.revision))


def _model_name(checkpoint, taken):
    name = Path(checkpoint).name or str(checkpoint)
    return name if name not in taken else str(checkpoint)


def _device():
    from ad.training import pick_device
    return pick_device()


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m ad", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(commands.add_parser("train", help="train one architecture"))

    score = commands.add_parser("score", help="write HW8's submission CSV (ID,score)")
    score.add_argument("--checkpoint", required=True, help="checkpoint folder or Hub model id")
    score.add_argument("--images", required=True, help=".npy, image, folder or .zip")
    score.add_argument("--out", required=True, help="CSV to write")
    score.add_argument("--batch-size", type=int, help=BATCH_SIZE_HELP)

    evaluate = commands.add_parser("evaluate", help="ROC-AUC overall and per source")
    evaluate.add_argument("--checkpoint", required=True, nargs="+",
                          help="one or more checkpoint folders or Hub ids (several: plus their ensemble)")
    evaluate.add_argument("--images", required=True)
    evaluate.add_argument("--labels", required=True, help=".npy or .csv, 0 normal / 1 anomaly")
    evaluate.add_argument("--sources", help=".npy or .csv of per-image source ids")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument("--batch-size", type=int, help=BATCH_SIZE_HELP)

    push = commands.add_parser("push", help="upload a checkpoint folder to the Hub")
    push.add_argument("--checkpoint", required=True)
    push.add_argument("--repo", required=True, metavar="USER/NAME")
    add_push_options(push)
    return parser


def main(argv=None, parser=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "command", "train") == "train":
            run_train(args, argv[1:] if argv[:1] == ["train"] else argv)
        else:
            {"score": run_score, "evaluate": run_evaluate, "push": run_push}[args.command](args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a disk full, a folder we may not write to, ...
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
