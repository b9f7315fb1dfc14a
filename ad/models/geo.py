"""Geometric self-supervision: learn to tell which view of a normal image one is shown.

A network that has learned how normal images sit in the frame (which way up, where, how large)
recognises the views of a normal image and is lost on views of anything else. The score is how
badly it recognises them (the sum of their cross-entropies), after GEOM (Golan and El-Yaniv,
2018), among the strongest detectors trained from scratch on normal images alone.

A view is a window of the image (top, left, height, width on the 64x64 image), shrunk to
`view_size`, turned by a number of quarter turns, and mirrored or not: the configuration says
which, so one architecture serves free-standing objects (shifted crops in quarter turns: which way
up is a shirt, and where does it stand?) and aligned faces (shifted and zoomed windows: where does
the face sit?). Every view is a real crop: no padding the network could cheat with.
"""

from itertools import product

import torch
import torch.nn as nn
import torch.nn.functional as F

from ad.data import CENTRE, IMAGE_SIZE
from ad.errors import InputError
from ad.models.base import Detector
from ad.models.registry import register_model
from ad.preprocess import resize

# Any normal image (the general default): four crops of 7/8 of the image, shifted towards each
# corner, each in its four quarter turns: which way up and where a thing stands in the frame, what
# every kind of normal image has (GEOM's rotations and translations). On Fashion-MNIST these 16
# views scored 0.939 mean ROC-AUC against 0.934 for the whole image turned, at 4x the compute.
SHIFTED_WINDOWS = ((0, 0, 56, 56), (0, 8, 56, 56), (8, 0, 56, 56), (8, 8, 56, 56))
# Aligned faces (the shipped face checkpoint): centre, shifted up, down, left, right, zoomed in,
# zoomed out. Quarter turns added nothing on faces (measured on faces-dev) and cost 3/10 more.
FACE_WINDOWS = ((8, 8, 48, 48), (0, 8, 48, 48), (16, 8, 48, 48), (8, 0, 48, 48), (8, 16, 48, 48),
                (14, 14, 36, 36), (0, 0, 64, 64))
EVIDENCE_AT_FULL_HEAT = 6.0  # uncalibrated heat map: share of the evidence per pixel, relative to an even spread


def conv_pool(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


@register_model("geo", order=6)
class TransformPredictor(Detector):
    tagline = "self-supervised: which view is this?"
    summary = ("A self-supervised detector: a small network learned to tell which view of a normal "
               "image it is shown; on anything unlike the normal images it cannot, and that is the score.")
    small_config = {"channels": [8, 16, 32], "view_size": 24, "windows": [[0, 0, 64, 64]]}
    heat_title = "Evidence: where the score comes from"
    heat_unit = "input gradient of the score, summed over colours"

    @property
    def heat_full_scale(self):
        """Full colour at the highest pixel of a normal image at the 99th percentile: one scale for
        every image. A checkpoint without pixel calibration falls back to each image's own spread."""
        return self.normal_peak()

    def __init__(self, *, channels=(16, 32, 64, 128), view_size=32, windows=SHIFTED_WINDOWS, turns=(0, 1, 2, 3),
                 mirrors=False, crop=None, image_size=IMAGE_SIZE, fit=CENTRE):
        super().__init__(crop=crop, image_size=image_size, fit=fit)
        self.view_size = view_size
        self.windows = [tuple(int(v) for v in w) for w in windows]
        for top, left, height, width in self.windows:
            if top < 0 or left < 0 or height < 8 or width < 8 or top + height > 64 or left + width > 64:
                raise InputError(f"window {(top, left, height, width)}: expected TOP, LEFT, HEIGHT, WIDTH "
                                 "inside the 64x64 image, at least 8x8")
        if not set(turns) <= {0, 1, 2, 3}:
            raise InputError(f"turns {list(turns)}: expected quarter turns among 0, 1, 2, 3")
        # every (window, quarter turns, mirrored) is one view, one class of the network's task
        mirrored = (False, True) if mirrors else (False,)
        self.transforms = list(product(range(len(self.windows)), sorted(set(turns)), mirrored))
        self.num_views = len(self.transforms)
        if self.num_views < 2:
            raise InputError("geo needs at least two views to tell apart (windows x turns x mirrors)")
        layers, c_in = [], 3
        for c in channels:
            layers.append(conv_pool(c_in, c))
            c_in = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, self.num_views)

    @property
    def score_description(self):
        return (f"how badly it recognises which of {self.num_views} views of the image it is shown "
                f"(the sum of the {self.num_views} cross-entropies)")

    @property
    def picture_label(self):
        return f"The {self.num_views} views it judged (green: recognised, red: not)"

    def sees(self):
        turned = len({turns for _, turns, _ in self.transforms})
        return (f"{self.num_views} views: {len(self.windows)} window{'s' * (len(self.windows) > 1)} of the 64x64 "
                f"image{f', each in {turned} quarter turns' if turned > 1 else ''}, at {self.view_size} px")

    @property
    def mirror_sensitive(self):
        """Mirroring an image would change a view's label: mirrored views, or windows off the
        vertical midline (mirroring swaps a crop shifted left with one shifted right)."""
        off_centre = any(2 * left + width != 64 for _, left, _, width in self.windows)
        return off_centre or any(mirrored for _, _, mirrored in self.transforms)

    def views(self, x):
        """(B, 3, 64, 64) -> (num_views, B, 3, view_size, view_size)."""
        windows = [resize(x[:, :, top:top + h, left:left + w], self.view_size) for top, left, h, w in self.windows]
        views = []
        for window, turns, mirrored in self.transforms:
            view = quarter_turns(windows[window], turns)
            views.append(view.flip(3) if mirrored else view)
        return torch.stack(views)

    def view_losses(self, x):
        """(num_views, B): cross-entropy of recognising each view of each image."""
        views = self.views(x)
        logits = self.head(self.features(views.flatten(0, 1))).unflatten(0, (self.num_views, -1))  # (V, B, V)
        right = torch.arange(self.num_views, device=x.device)
        return -F.log_softmax(logits, dim=-1)[right, :, right]  # view v's loss: -log p(v); no batch size baked in

    def loss(self, x):
        return self.view_losses(x).mean()

    def score(self, x):
        return self.view_losses(x).sum(dim=0)

    def explain(self, x):
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            losses = self.view_losses(x)
            (gradient,) = torch.autograd.grad(losses.sum(), x)
        evidence = gradient.abs().sum(dim=1)  # (B, S, S)
        recognised = torch.exp(-losses.detach())  # probability given to the right answer
        result = self.explanation(losses.detach().sum(dim=0), self._montage(x.detach(), recognised), evidence)
        if not self.pixels_calibrated:  # no data-wide scale stored: each image's own spread
            share = evidence / evidence.flatten(1).mean(dim=1).clamp_min(1e-12)[:, None, None]
            result.heat = (share / EVIDENCE_AT_FULL_HEAT).clamp(0, 1)
        return result

    def _montage(self, x, recognised):
        """The views in a grid with no empty cell, each framed from red (not recognised) to green."""
        views = self.views(x)  # (V, B, 3, S, S)
        frame = torch.stack([1 - 2 * recognised, 2 * recognised - 1, -torch.ones_like(recognised)], -1)
        framed = F.pad(views, (2, 2, 2, 2))  # (V, B, 3, S+4, S+4)
        border = torch.ones_like(framed, dtype=torch.bool)
        border[..., 2:-2, 2:-2] = False
        framed = torch.where(border, frame[:, :, :, None, None], framed)
        count = len(framed)
        rows = max(r for r in range(1, int(count ** 0.5) + 1) if count % r == 0)  # 7 views: 1 row
        per_row = count // rows
        lines = [torch.cat(list(framed[i:i + per_row]), dim=-1) for i in range(0, count, per_row)]
        return torch.cat(lines, dim=-2)  # (B, 3, rows(S+4), per_row(S+4))


def quarter_turns(x, turns):
    """torch.rot90(x, turns, dims=(2, 3)) written with flips and a transpose, which ONNX exports."""
    if turns % 4 == 1:
        return x.flip(3).transpose(2, 3)
    if turns % 4 == 2:
        return x.flip(2).flip(3)
    if turns % 4 == 3:
        return x.transpose(2, 3).flip(3)
    return x
