"""Scoring speed of the shipped checkpoints on this machine, GPU included: one image end to end as
the app runs it, and HW8's full test set (19,636 images) at several batch sizes.

Usage: python benchmarks/speed.py [--device cpu|cuda|mps] [--batch-sizes 64,128,256,1024] [--write-readme]
The images are the bundled sample test set tiled to 19,636 (speed does not depend on content), so
it runs wherever the project is checked out, without the benchmark data. --write-readme fills the
README section of this device's type (speed-cpu, speed-cuda).
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ad.data import load_array, open_image  # noqa: E402
from ad.scoring import anomaly_scores, default_batch_size, explain  # noqa: E402
from ad.training import pick_device  # noqa: E402
from ad.ui import render  # noqa: E402
from ad.ui.zoo import load_zoo, model_sources  # noqa: E402

FULL_HW8_TEST_SET = 19_636
SAMPLE_IMAGES = ROOT / "examples" / "sample_testset" / "testingset.npy"


def one_image_ms(model, png_path, repeats=30):
    """Median time of what Detect computes: decode the file, preprocess, model, the four pictures."""
    def detect():
        return render.pictures(explain(model, open_image(png_path)))  # pictures are on the CPU: synced
    detect()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        detect()
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def full_set_seconds(model, images, batch_size):
    anomaly_scores(model, images[:batch_size], batch_size=batch_size)  # warm-up: kernels, allocator
    started = time.perf_counter()
    anomaly_scores(model, images, batch_size=batch_size)  # scores come back to the CPU: synced
    return time.perf_counter() - started


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


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
    png_path = str(Path(tempfile.mkdtemp()) / "probe.png")
    Image.fromarray(sample[0]).save(png_path)

    zoo = load_zoo(model_sources(args.checkpoints, hub_ids=""), device=device)
    header = ["model", "one image in the app"] + [f"{FULL_HW8_TEST_SET:,} images, batch {b}" for b in batch_sizes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, model in zoo.models.items():
        cells = [f"**{name}**", f"{one_image_ms(model, png_path):.1f} ms"]
        cells += [f"{full_set_seconds(model, images, b):.2f} s" for b in batch_sizes]
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    footnote = (f"`python benchmarks/speed.py --write-readme` on {device_name(device)}, torch "
                f"{torch.__version__}; the app and `ad` score in batches of {default_batch_size(device)} "
                f"on this device.")
    print(table + "\n\n" + footnote)
    if args.write_readme:
        from benchmarks.readme import replace_section
        replace_section(f"speed-{device.type}", table + "\n\n" + footnote)


if __name__ == "__main__":
    main()
