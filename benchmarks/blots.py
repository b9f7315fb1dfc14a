"""Draw a defect, measured: a random blot painted on each of N held-out normal faces (as the Detect
tab's editor lets a visitor do). Per model: how often the painted face scores above the same face
unpainted, and how much of the heat map's hottest 5% falls inside the blot (beside the blot's own
share of what the model sees: what a heat map that knew nothing would score).

Usage: python -m benchmarks.blots [--data FOLDER] [--count 500] [--write-readme]
FOLDER is in HW8's layout with testing_labels.npy (default: ../shared/data/faces-dev); the faces are
the test set's normal ones, which no model trained on.
"""

import argparse
from pathlib import Path

import numpy as np

from ad import checkpoint
from ad.data import load_test_set
from ad.scoring import anomaly_scores
from benchmarks import ROOT
from benchmarks.readme import markdown_table, publish

HOTTEST = 0.05  # the share of the heat map's pixels that counts as "where it points"


def paint_blots(images, seed=0):
    """(painted images, masks): one ellipse of one random colour per image, 8 to 20 px across,
    anywhere on the face's central 48x48."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:64, :64]
    painted, masks = np.array(images, copy=True), np.zeros(images.shape[:3], dtype=bool)
    for i in range(len(images)):
        centre, radii = rng.uniform(16, 48, 2), rng.uniform(4, 10, 2)
        masks[i] = ((rows - centre[0]) / radii[0]) ** 2 + ((columns - centre[1]) / radii[1]) ** 2 <= 1
        painted[i][masks[i]] = rng.integers(0, 256, 3)
    return painted, masks


def mask_as_seen(model, masks):
    """The blots in the model's own view (its crop, at its size), as the heat map lies: (N, S, S) bool."""
    as_images = np.repeat(masks[..., None].astype(np.uint8) * 255, 3, axis=-1)
    return (model.preprocess(as_images)[:, 0] > 0).cpu().numpy()  # more than half covered


def hottest_inside(model, painted, masks, batch_size=64):
    """Per image: the share of the hottest 5% of heat-map pixels that lie inside the blot (NaN when the
    blot is outside what the model reads), and the blot's share of that view."""
    inside, chance = [], []
    for start in range(0, len(painted), batch_size):
        x = model.preprocess(painted[start:start + batch_size])
        heat = model.explain(x).heat.detach().float().cpu().numpy().reshape(len(x), -1)
        seen = mask_as_seen(model, masks[start:start + batch_size]).reshape(len(x), -1)
        for h, m in zip(heat, seen):
            if not m.any():
                inside.append(np.nan)
                chance.append(np.nan)
                continue
            top = np.argsort(-h, kind="stable")[:max(1, round(HOTTEST * len(h)))]
            inside.append(m[top].mean())
            chance.append(m.mean())
    return np.array(inside), np.array(chance)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces-dev"))
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    data = Path(args.data)
    test_set = load_test_set(data / "testingset.npy", data / "testing_labels.npy")
    faces = np.asarray(test_set.images[np.flatnonzero(test_set.labels == 0)[:args.count]])
    painted, masks = paint_blots(faces)
    rows = []
    for name, folder in checkpoint.find(args.checkpoints).items():
        model = checkpoint.load(folder).eval()
        above = float(np.mean(anomaly_scores(model, painted) > anomaly_scores(model, faces)))
        inside, chance = hottest_inside(model, painted, masks)
        seen = ~np.isnan(inside)
        rows.append([f"**{name}**", f"{above:.1%}", f"{np.nanmean(inside):.1%}", f"{np.nanmean(chance):.1%}",
                     f"{seen.mean():.0%}"])
        print(*rows[-1], sep=" | ", flush=True)
    table = markdown_table(["model", "painted face scores higher", "hottest 5% inside the blot",
                            "the blot's share of the view (chance)", "blots the model sees"], rows)
    footnote = (f"`python -m benchmarks.blots --count {args.count} --write-readme`: {len(faces)} normal faces of "
                f"{data.name}'s test set, each with one random ellipse (8 to 20 px across, one random colour) on "
                "its central 48x48; a model with a crop box sees only the blots that reach into it.")
    publish("blots", table, footnote, args.write_readme)


if __name__ == "__main__":
    main()
