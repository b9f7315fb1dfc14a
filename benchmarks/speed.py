"""Scoring speed of the shipped checkpoints on this machine, GPU included: one image end to end as
the app runs it, HW8's full test set (19,636 images) at several batch sizes, and the app's Evaluate
tab on that many images.

Usage: python -m benchmarks.speed [--device cpu|cuda|mps] [--batch-sizes 64,128,256,1024] [--write-readme]
The images are the bundled sample test set tiled to 19,636 (speed does not depend on content), so
it runs wherever the project is checked out, without the benchmark data. --write-readme fills the
README section of this device's type (speed-cpu, speed-cuda).
"""

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from ad import checkpoint
from ad.data import load_array, open_image
from ad.device import default_batch_size, pick_device
from ad.errors import InputError
from ad.scoring import anomaly_scores, detect
from ad.ui import render
from ad.ui.stored_run import PERCENTILE
from ad.ui.tabs import build_demo
from ad.ui.zoo import Zoo
from benchmarks import ROOT
from benchmarks.readme import markdown_table, publish

FULL_HW8_TEST_SET = 19_636
SAMPLE_IMAGES = ROOT / "examples" / "sample_testset" / "testingset.npy"


def one_image_ms(model, image, repeats=30):
    """Median time of what Detect computes for an uploaded PNG: decode, preprocess, model, the four
    pictures."""
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")

    def detect_upload():
        return render.pictures(detect(model, open_image(png.getvalue())))  # pictures on the CPU: synced
    detect_upload()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        detect_upload()
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def full_set_seconds(model, images, batch_size):
    anomaly_scores(model, images[:batch_size], batch_size=batch_size)  # warm-up: kernels, allocator
    started = time.perf_counter()
    anomaly_scores(model, images, batch_size=batch_size)  # scores come back to the CPU: synced
    return time.perf_counter() - started


def onnxruntime_seconds(model, images):
    """HW8's full test set through the exported graph with onnxruntime on the CPU (None without it)."""
    try:
        from ad.export import export_onnx, onnx_scores
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        try:
            export_onnx(model, path)
        except InputError:  # onnx is not installed
            return None
        onnx_scores(path, images[:1024])  # warm-up
        started = time.perf_counter()
        onnx_scores(path, images)
        return time.perf_counter() - started


def evaluate_tab_seconds(models, images, labels, sources):
    """The Evaluate tab on HW8's full size, as a visitor meets it: (scoring the uploaded .npy with
    every model and drawing all of it; one move of the threshold slider, its histograms encoded as
    the page receives them; the CSVs and their zip where the slider rests)."""
    with tempfile.TemporaryDirectory() as folder:
        files = [Path(folder) / name for name in ("testingset.npy", "labels.npy", "sources.npy")]
        for path, array in zip(files, (images, labels, sources)):
            np.save(path, array)
        handlers = build_demo(Zoo(models)).handlers
        page = handlers.page.evaluate
        started = time.perf_counter()
        shown = handlers.evaluate("upload", *map(str, files), list(models), progress=lambda *a, **k: None)
        evaluate_s = time.perf_counter() - started
        started = time.perf_counter()
        key = shown[page.run]
        moved = handlers.at_threshold(key, PERCENTILE, 95.0, next(iter(models)))
        gr.Plot(format="png").postprocess(moved[page.histograms])  # what the page receives: the figure encoded,
        gr.Gallery(format="png").postprocess(moved[page.flagged])  # the most anomalous images written out
        threshold_s = time.perf_counter() - started
        started = time.perf_counter()
        handlers.downloads(key, PERCENTILE, 95.0)
        return evaluate_s, threshold_s, time.perf_counter() - started


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    processor = platform.processor() or platform.machine()
    return f"{processor}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    parser.add_argument("--device", default=None, help="default: cuda if available, then mps, then cpu")
    parser.add_argument("--batch-sizes", default="64,128,256,1024")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else pick_device()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    sample = np.asarray(load_array(SAMPLE_IMAGES))
    images = np.resize(sample, (FULL_HW8_TEST_SET, *sample.shape[1:]))  # tiled

    models = {name: checkpoint.load(path, device=device) for name, path in checkpoint.find(args.checkpoints).items()}
    header = ["model", "one image in the app"] + [f"{FULL_HW8_TEST_SET:,} images, batch {b}" for b in batch_sizes] + [
        f"{FULL_HW8_TEST_SET:,} images, exported to ONNX, onnxruntime on the CPU"]
    rows = []
    for name, model in models.items():
        onnx_s = onnxruntime_seconds(model, images)
        rows.append([f"**{name}**", f"{one_image_ms(model, sample[0]):.1f} ms"]
                    + [f"{full_set_seconds(model, images, b):.2f} s" for b in batch_sizes]
                    + ["-" if onnx_s is None else f"{onnx_s:.2f} s"])
        print(*rows[-1], sep=" | ", flush=True)
    table = markdown_table(header, rows)
    labels = np.resize(np.load(SAMPLE_IMAGES.with_name("testing_labels.npy")), FULL_HW8_TEST_SET)
    sources = np.resize(np.load(SAMPLE_IMAGES.with_name("testing_sources.npy")), FULL_HW8_TEST_SET)
    evaluate_s, threshold_s, downloads_s = evaluate_tab_seconds(models, images, labels, sources)
    table += (f"\n\nThe Evaluate tab on {FULL_HW8_TEST_SET:,} labelled images with all {len(models)} models: "
              f"**{evaluate_s:.1f} s** from the uploaded .npy to every table and figure; then each move of "
              f"the threshold **{threshold_s:.2f} s** (no model runs again), and {downloads_s:.2f} s for the "
              "CSVs and their zip where the slider comes to rest.")
    print(table.splitlines()[-1], flush=True)
    footnote = (f"`python -m benchmarks.speed --write-readme` on {device_name(device)}, torch "
                f"{torch.__version__}; the app and `ad` score in batches of {default_batch_size(device)} "
                f"on this device.")
    publish(f"speed-{device.type}", table, footnote, args.write_readme)


if __name__ == "__main__":
    main()
