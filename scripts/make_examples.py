"""Rebuild examples/ (demo images and the bundled sample test set) from a faces-dev-style folder.

Usage: python -m scripts.make_examples [FOLDER]   (default: ../shared/data/faces-dev)
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from scripts import ROOT

SOURCE_NAMES = {0: "celeba", 1: "utkface", 2: "cifar10"}  # faces-dev's testing_sources.npy ids, in file names
DISPLAY_NAMES = {0: "CelebA", 1: "UTKFace", 2: "CIFAR-10"}  # the sample set's sources, as the app shows them
SAMPLE_PER_SOURCE = {0: 60, 1: 20, 2: 20}  # small: it ships in the repository
EXAMPLES_PER_SOURCE = 6


def main(folder):
    images = np.load(folder / "testingset.npy", mmap_mode="r", allow_pickle=False)
    sources = np.load(folder / "testing_sources.npy", allow_pickle=False)
    labels = np.load(folder / "testing_labels.npy", allow_pickle=False)
    rng = np.random.default_rng(8)
    picked = {s: rng.permutation(np.flatnonzero(sources == s)) for s in SOURCE_NAMES}

    out = ROOT / "examples" / "images"
    out.mkdir(parents=True, exist_ok=True)
    for s, name in SOURCE_NAMES.items():
        kind = "normal" if s == 0 else "anomaly"
        for i, index in enumerate(picked[s][:EXAMPLES_PER_SOURCE]):
            Image.fromarray(images[index]).save(out / f"{kind}_{name}_{i + 1}.png")

    sample = np.sort(np.concatenate([picked[s][EXAMPLES_PER_SOURCE:EXAMPLES_PER_SOURCE + n]
                                     for s, n in SAMPLE_PER_SOURCE.items()]))
    out = ROOT / "examples" / "sample_testset"
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "testingset.npy", np.ascontiguousarray(images[sample]))
    np.save(out / "testing_labels.npy", labels[sample].astype(np.uint8))
    np.save(out / "testing_sources.npy", np.array([DISPLAY_NAMES[s] for s in sources[sample]]))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "faces-dev")
