"""Command line: `python -m ad train | score | evaluate | calibrate | export | push` (train.py is `ad train`)."""

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from ad import checkpoint
from ad.data import FITS, load_images, load_test_set
from ad.device import CPU_BATCH_SIZE, GPU_BATCH_SIZE, pick_device
from ad.errors import InputError
from ad.models import list_models, model_class
from ad.preprocess import crop_box
from ad.scoring import anomaly_scores, calibrate, explain_all
from ad.training import TrainConfig, train_config

BATCH_SIZE_HELP = f"default: {CPU_BATCH_SIZE} on CPU, {GPU_BATCH_SIZE} on GPU"
TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
RUN_FLAGS = {"out", "resume", "command"}  # what a resumed run may be given anew
THRESHOLD_PERCENTILE = 99.0  # score --details' verdicts: above 99% of held-out normal images' scores


def add_train_arguments(parser):
    """train's flags; their defaults live in TrainConfig alone (argparse only records what was given)."""
    def add(*flags, help, **kwargs):
        name = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        shown = TRAIN_DEFAULTS.get(name)
        own = [f"{arch} {model_class(arch).training_defaults[name]}" for arch in list_models()
               if name in model_class(arch).training_defaults]  # an architecture's training_defaults win
        suffix = (f" (default: {shown}{'; ' + ', '.join(own) if own else ''})"
                  if shown not in (None, dataclasses.MISSING) and "action" not in kwargs else "")
        parser.add_argument(*flags, help=help + suffix, default=argparse.SUPPRESS, **kwargs)

    add("--arch", choices=list_models(), help="architecture")
    add("--data", help="the normal images (required unless --resume): an .npy (HW8's trainingset.npy "
        "or any array of images), a folder of images or a .zip of images")
    add("--out", required=True, help="checkpoint folder to write")
    stepping = [name for name in list_models() if model_class(name).learns_by_gradient]
    least = ", ".join(f"{name} {train_config(arch=name).min_steps}" for name in stepping)
    remembering = ", ".join(name for name in list_models() if name not in stepping)
    add("--epochs", type=int, help="passes over the training images (default: 3, more (up to 50) for small "
        f"sets, so that training takes at least the architecture's minimum of steps: {least}; "
        f"{remembering} only remember the images, in one pass)")
    add("--min-steps", type=int, help="without --epochs: enough passes for at least this many steps")
    add("--minutes", type=float, help="train for about this long instead: the epochs that fit, after timing "
        "a few steps of this model on this machine (instead of --epochs)")
    add("--batch-size", type=int, help="images per step")
    add("--lr", type=float, help="peak learning rate (cosine schedule)")
    add("--crop", type=crop_box, help="TOP,LEFT,HEIGHT,WIDTH box on the image (--image-size square) that "
        "the model reads, resized to its input_size (64 unless --set input_size=N); saved in the checkpoint")
    add("--image-size", type=int, help="side of the square every picture is read at; saved in the checkpoint")
    add("--fit", choices=list(FITS), help="how a picture becomes that square: "
        + "; ".join(f"{name}: {how}" for name, how in FITS.items()))
    add("--set", dest="model", action="append", metavar="KEY=VALUE",
        help="architecture option, JSON value, e.g. --set latent_dim=8 --set hidden=[256,32]")
    add("--holdout", type=float, help="share of images held out to calibrate")
    add("--no-flip", dest="flip", action="store_false", help="no left-right flips")
    add("--limit", type=int, help="use only N training images, spread evenly over the file")
    add("--test", help="labelled test images (.npy, .zip, folder) to report ROC-AUC on after training")
    add("--labels", help="test labels (.npy or .csv): 0 normal, 1 anomaly")
    add("--sources", help="test source ids or names (.npy or .csv) for metrics per kind of anomaly")
    add("--source-names", help="names of numeric source ids, e.g. 1=UTKFace,2=CIFAR-10")
    add("--masks", help="the test set's defect masks, MASKS/<kind>/<name>.png (default: ground_truth/ "
        "beside an MVTec-style test/ folder)")
    add("--seed", type=int, help="seed of weights, order and augmentation")
    add("--resume", action="store_true",
        help="continue the unfinished run in --out, with the settings it started with")
    add("--overwrite", action="store_true", help="replace the checkpoint in --out")
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
    from ad.training import train  # torch.distributed and friends load only here

    given = {k: v for k, v in vars(args).items() if k in TRAIN_DEFAULTS}
    if "model" in given:
        given["model"] = parse_model_options(given["model"])
    if "minutes" in given and "epochs" in given:
        raise InputError("--minutes chooses the number of epochs itself: give --minutes or --epochs, not both")
    for name in ("epochs", "min_steps", "batch_size"):
        if given.get(name, 1) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if given.get("resume") and _is_main_process():
        _say_what_resume_ignores(given)
    train(train_config(**given, command="python train.py " + shlex.join(argv)))
    if args.push_to_hub and _is_main_process():
        print(checkpoint.push(args.out, args.push_to_hub, private=args.private, revision=args.revision))


def _say_what_resume_ignores(given):
    """--resume continues with the run's own settings: name every flag given anew that it ignores."""
    started = checkpoint.read_training(given["out"]).get("config", {})
    ignored = [f"--{name.replace('_', '-')} {json.dumps(value, default=list)} (the run has "
               f"{json.dumps(started.get(name))})"
               for name, value in given.items()
               if name not in RUN_FLAGS and json.loads(json.dumps(value, default=list)) != started.get(name)]
    if ignored:
        print("note: --resume continues with the settings the run started with; ignoring "
              + ", ".join(ignored), file=sys.stderr)


def _is_main_process():
    import os
    return os.environ.get("RANK", "0") == "0"


def run_score(args):
    from ad.evaluation import details_csv, verdicts_at, write_submission
    from ad.files import write_text

    model = checkpoint.load(args.checkpoint, device=pick_device())
    images, names = load_images(args.images, **model.input_format)
    scores = anomaly_scores(model, images, batch_size=args.batch_size)
    write_submission(args.out, scores)
    print(f"wrote {len(scores)} scores to {args.out}")
    if args.details:
        verdicts = verdicts_at(scores, model.threshold(_percentile(args.threshold_percentile)))
        write_text(args.details, details_csv(names, scores, model.percentile(scores), verdicts))
        print(f"wrote file names, percentiles and verdicts (threshold: the {args.threshold_percentile:g}th "
              f"percentile of normal scores; {verdicts.count('anomalous')} anomalous) to {args.details}")


def run_evaluate(args):
    from ad.evaluation import at_threshold, best_f1_threshold, metrics_by_source, rank_average, test_metrics

    results, all_scores, test_sets = {}, [], {}  # the test set read once per input format
    for source in args.checkpoint:
        model = checkpoint.load(source, device=pick_device())
        key = tuple(model.input_format.values())
        if key not in test_sets:
            test_sets[key] = load_test_set(args.images, args.labels, args.sources, args.source_names,
                                           masks=args.masks, **model.input_format)
        test_set = test_sets[key]
        if test_set.masks is None:
            scores, maps = anomaly_scores(model, test_set.images, batch_size=args.batch_size), None
        else:
            scores, maps, _ = explain_all(model, test_set.images, batch_size=args.batch_size)
        all_scores.append(scores)
        name = _model_name(source, results)
        results[name] = test_metrics(test_set, scores, maps)
        threshold, f1 = best_f1_threshold(test_set.labels, scores)
        results[name]["best_f1"] = {"threshold": threshold, "f1": f1}
        if args.threshold_percentile is not None:
            results[name]["at_threshold"] = {"percentile": args.threshold_percentile, **at_threshold(
                test_set.labels, scores, model.threshold(_percentile(args.threshold_percentile)))}
    if len(all_scores) > 1:  # ranks have no calibration: no threshold metrics for the ensemble
        results["ensemble"] = metrics_by_source(test_set.labels, rank_average(all_scores), test_set.sources)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_evaluation(results, args.threshold_percentile)


def _print_evaluation(results, threshold_percentile):
    """The tables: ROC-AUC per kind of anomaly, every other metric overall, the verdicts at a threshold."""
    from ad.evaluation import METRICS, format_table

    per_kind = [key for key in PER_KIND_METRICS if any(key in r for r in results.values())]
    others = [key for key in METRICS if key not in PER_KIND_METRICS]
    for key in per_kind:
        print(f"{'' if key == per_kind[0] else chr(10)}{METRICS[key].title}, overall and normal vs each "
              "kind of anomaly:")
        print(format_table({name: r[key] for name, r in results.items() if key in r}))
    print("\nOverall: " + ", ".join(METRICS[key].title for key in others) + ", best F1:")
    print(format_table({name: {**{METRICS[key].column: r[key]["overall"] for key in others if key in r},
                               **({"best F1": r["best_f1"]["f1"]} if "best_f1" in r else {})}
                        for name, r in results.items()}))
    if threshold_percentile is not None:
        print(f"\nAt the {threshold_percentile:g}th percentile of each model's normal scores:")
        print(format_table({name: {k: r["at_threshold"][k] for k in AT_THRESHOLD_COLUMNS}
                            for name, r in results.items() if "at_threshold" in r}))


PER_KIND_METRICS = ("roc_auc", "pixel_roc_auc", "pixel_aupro")  # a table each, one column per kind
AT_THRESHOLD_COLUMNS = ("precision", "recall", "f1", "false_positive_rate", "true_positives", "false_positives",
                        "true_negatives", "false_negatives")


def run_calibrate(args):
    """Store the score and peak-pixel quantiles of normal images in a checkpoint that has none (or new ones)."""
    folder = Path(args.checkpoint)
    if not folder.is_dir():
        raise InputError(f"{folder}: calibrate writes into a local checkpoint folder; download a Hub "
                         "model first (huggingface-cli download USER/NAME --local-dir FOLDER)")
    model = checkpoint.load(folder, device=pick_device(), require_calibration=False)
    images, _ = load_images(args.images, **model.input_format)
    calibrate(model, images)
    checkpoint.save(model, folder, model.training_record or None, model.metrics or None)
    print(f"calibrated {folder} on {len(images)} normal images; its 99th percentile score is "
          f"{model.threshold(99):.4g}")


def run_export(args):
    from ad.export import export_onnx

    model = checkpoint.load(args.checkpoint, device="cpu")
    export_onnx(model, args.out)
    side = model.image_size
    print(f"wrote {args.out}: uint8 images (N, {side}, {side}, 3) in, {model.architecture} anomaly scores (N,) out; "
          "the calibration quantiles are in its metadata (normal_score_quantiles)")


def run_push(args):
    print(checkpoint.push(args.checkpoint, args.repo, private=args.private, revision=args.revision))


def _percentile(value):
    if not 0 <= value <= 100:
        raise InputError(f"--threshold-percentile {value:g}: expected a percentile from 0 to 100")
    return value


def _model_name(source, taken):
    name = Path(source).name or str(source)
    return name if name not in taken else str(source)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m ad", description=__doc__)
    commands = parser.add_subparsers(dest="subcommand", required=True)
    add_train_arguments(commands.add_parser("train", help="train one architecture"))

    score = commands.add_parser("score", help="write HW8's submission CSV (ID,score)")
    score.add_argument("--checkpoint", required=True, help="checkpoint folder or Hub model id")
    score.add_argument("--images", required=True, help=".npy, image, folder or .zip")
    score.add_argument("--out", required=True, help="CSV to write")
    score.add_argument("--details", metavar="CSV", help="also write every image's file name, score, "
                       "percentile among normal images and verdict")
    score.add_argument("--threshold-percentile", type=float, default=THRESHOLD_PERCENTILE,
                       help="the verdicts' threshold: this percentile of the model's held-out normal scores "
                       f"(default: {THRESHOLD_PERCENTILE:g})")
    score.add_argument("--batch-size", type=int, help=BATCH_SIZE_HELP)

    evaluate = commands.add_parser("evaluate", help="ROC-AUC, average precision, TPR at low FPR, F1; "
                                   "overall and per kind of anomaly")
    evaluate.add_argument("--checkpoint", required=True, nargs="+",
                          help="one or more checkpoint folders or Hub ids (several: plus their ensemble)")
    evaluate.add_argument("--images", required=True, help=".npy, folder or .zip of test images")
    evaluate.add_argument("--labels", help=".npy or .csv, 0 normal / 1 anomaly (default, for a folder "
                          "or zip: its sub-folders, good/ normal and every other one a kind of anomaly)")
    evaluate.add_argument("--sources", help=".npy or .csv of per-image source ids or names")
    evaluate.add_argument("--masks", help="folder of defect masks, MASKS/<kind>/<name>.png (or "
                          "<name>_mask.png), for pixel ROC-AUC and AUPRO (default: ground_truth/ beside "
                          "an MVTec-style test/ folder)")
    evaluate.add_argument("--source-names", help="names of numeric source ids, e.g. 1=UTKFace,2=CIFAR-10")
    evaluate.add_argument("--threshold-percentile", type=float, metavar="P",
                          help="also report precision, recall, F1 and the confusion counts when images "
                          "above the Pth percentile of each model's normal scores are called anomalous")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument("--batch-size", type=int, help=BATCH_SIZE_HELP)

    calibrate = commands.add_parser("calibrate", help="store normal images' score quantiles in a "
                                    "checkpoint (one that has none: hand-made, or from elsewhere)")
    calibrate.add_argument("--checkpoint", required=True, help="local checkpoint folder, rewritten")
    calibrate.add_argument("--images", required=True,
                           help="normal images the model was not trained on (.npy, folder, .zip)")
    calibrate.add_argument("--batch-size", type=int, help=BATCH_SIZE_HELP)

    export = commands.add_parser("export", help="write an ONNX graph from uint8 images to anomaly scores, "
                                 "preprocessing inside, calibration in its metadata")
    export.add_argument("--checkpoint", required=True, help="checkpoint folder, zip or Hub id")
    export.add_argument("--out", required=True, help="the .onnx file to write")

    push = commands.add_parser("push", help="upload a checkpoint folder to the Hub")
    push.add_argument("--checkpoint", required=True)
    push.add_argument("--repo", required=True, metavar="USER/NAME")
    add_push_options(push)
    return parser


def main(argv=None, parser=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    commands = {"score": run_score, "evaluate": run_evaluate, "calibrate": run_calibrate, "export": run_export,
                "push": run_push}
    try:
        command = getattr(args, "subcommand", "train")
        if command == "train":
            run_train(args, argv[1:] if argv[:1] == ["train"] else argv)
        else:
            commands[command](args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a disk full, a folder we may not write to, ...
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
