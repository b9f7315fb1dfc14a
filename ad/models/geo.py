"""Geometric self-supervision: learn to tell which view of a normal image one is shown.

A network that has learned how normal images sit in the frame (which way up, where, how large)
recognises the views of a normal image and is lost on views of anything else. The score is how
badly it recognises them (the sum of their cross-entropies), after GEOM (Golan and El-Yaniv,
2018), among the strongest detectors trained from scratch on normal images alone.

What the network learned to see is worth more than its answer: with a memory of normal images'
features (`memory_size`, the default), the score is how far each view's features lie from the same
view of the nearest remembered normal image (1 - cosine similarity, summed over the views), as CSI
(Tack et al. 2020) scores its own features. On CIFAR-100's superclasses 0, 5 and 13 this gave
0.749, 0.652 and 0.676 where the cross-entropies gave 0.655, 0.640 and 0.601, from the same network;
on Fashion-MNIST's classes 0 and 6, 0.950 and 0.850 against 0.947 and 0.836 (README, the one-class
benchmark). The memory is filled after every epoch, from the network as it then stands.

Where a flaw is, the network cannot say: the gradient of its score points at edges everywhere (on
tiles, pixel ROC-AUC 0.55). So geo also holds a patch memory of normal surfaces (`surface`, the
default; ad.models.patch) that draws its heat map and its defect region: on tiles 0.71 pixel
ROC-AUC. The memory does not enter the score, which stays the network's (README, the defect
benchmark): on tiles, adding its surprise to the score's lowered the image ROC-AUC.

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

from ad.data import CENTRE, IMAGE_SIZE, WHOLE
from ad.errors import InputError
from ad.models.base import Detector, check_member_options
from ad.models.registry import create_model, register_model
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
MEMORY_SIZE = 2048  # normal images remembered: on Fashion-MNIST 2,048 of 6,000 scored as well as all
SURFACE = {}  # the surface memory's options: a patch memory's defaults (ad.models.patch), at geo's input
EVIDENCE_AT_FULL_HEAT = 6.0  # uncalibrated heat map: share of the evidence per pixel, relative to an even spread


def conv_pool(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


@register_model("geo", order=6)
class TransformPredictor(Detector):
    tagline = "self-supervised: which view is this?"
    summary = ("A self-supervised detector: a small network learned to tell which view of a normal "
               "image it is shown, and so to see what normal images have in common; anything unlike them "
               "it sees differently (or cannot place), and that is the score.")
    small_config = {"channels": [8, 16, 32], "view_size": 24, "windows": [[0, 0, 64, 64]], "memory_size": 256,
                    "surface": {"memory_size": 1000}}
    # the whole picture: a flaw near the border stays in the surface memory's view (square images: the same)
    training_defaults = {"fit": WHOLE}

    @property
    def heat_title(self):
        return self.surface.heat_title if self.surface else "Evidence: where the score comes from"

    @property
    def heat_unit(self):
        return self.surface.heat_unit if self.surface else "input gradient of the score, summed over colours"

    @property
    def heat_full_scale(self):
        """Full colour at the highest pixel of a normal image at the 99th percentile: one scale for
        every image. A checkpoint without pixel calibration falls back to each image's own spread."""
        return self.normal_peak()

    def __init__(self, *, channels=(16, 32, 64, 128), view_size=32, windows=SHIFTED_WINDOWS, turns=(0, 1, 2, 3),
                 mirrors=False, memory_size=MEMORY_SIZE, surface=SURFACE, crop=None, image_size=IMAGE_SIZE,
                 fit=CENTRE):
        super().__init__(crop=crop, image_size=image_size, fit=fit)
        check_member_options(surface, "geo's surface: expected a dict of the patch memory's options (its input "
                             "is geo's), or null for none (the heat map is then the score's gradient)")
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
        if not isinstance(memory_size, int) or memory_size < 0:
            raise InputError(f"geo's memory_size {memory_size!r}: expected a whole number of normal images to "
                             "remember (0: none, the score is then the cross-entropies)")
        self.memory_size = memory_size
        # Each remembered image's features, one unit vector per view; it travels in model.safetensors,
        # in half precision (8 MB for 2,048 images of 16 views; a cosine to within 1e-3)
        self.register_buffer("memory", torch.zeros(memory_size, self.num_views, c_in, dtype=torch.float16)
                             if memory_size else None)
        # made last, and with no weights: the network's initial weights are those it had without it
        self.surface = None if surface is None else create_model(
            "patch", **surface, crop=crop, input_size=self.input_size, image_size=image_size, fit=fit)

    @classmethod
    def upgrade_options(cls, options, written_in):
        """Before format 5 geo had no surface memory; before 4 no memory: its score was the cross-entropies."""
        options = {"surface": None, **options} if written_in < 5 else options
        return {"memory_size": 0, **options} if written_in < 4 else options

    @property
    def members(self):
        """The surface memory, filled and calibrated before geo, whose heat map it draws."""
        return [self.surface] if self.surface else []

    @property
    def remembers(self):
        """After every epoch, when it has a memory."""
        return self.memory_size > 0

    @property
    def memory_images(self):
        """The most training images its memory reads (ad.scoring.remember draws them at random)."""
        return self.memory_size

    @property
    def score_description(self):
        if self.memory_size:
            return (f"how far the features it sees in {self.num_views} views of the image lie from those of the "
                    f"nearest of {self.memory_size} remembered normal images (1 - cosine similarity, summed over "
                    "the views)")
        return (f"how badly it recognises which of {self.num_views} views of the image it is shown "
                f"(the sum of the {self.num_views} cross-entropies)")

    @property
    def picture_label(self):
        return f"The {self.num_views} views it judged (green: recognised, red: not)"

    def sees(self):
        turned = len({turns for _, turns, _ in self.transforms})
        return (f"{self.num_views} views: {len(self.windows)} window{'s' * (len(self.windows) > 1)} of the 64x64 "
                f"image{f', each in {turned} quarter turns' if turned > 1 else ''}, at {self.view_size} px"
                + (f", against {self.memory_size} remembered normal images" if self.memory_size else "")
                + ("; its heat map: a memory of normal surfaces" if self.surface else ""))

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

    def view_features(self, x):
        """(num_views, B, C): what the network sees in each view of each image."""
        return self.features(self.views(x).flatten(0, 1)).unflatten(0, (self.num_views, -1))

    def view_losses(self, x, features=None):
        """(num_views, B): cross-entropy of recognising each view of each image."""
        logits = self.head(self.view_features(x) if features is None else features)  # (V, B, V)
        right = torch.arange(self.num_views, device=x.device)
        return -F.log_softmax(logits, dim=-1)[right, :, right]  # view v's loss: -log p(v); no batch size baked in

    def loss(self, x):
        return self.view_losses(x).mean()

    def remember(self, batches, image_count, seed=0):
        """The features of `batches` (at most memory_size images, drawn by ad.scoring.remember); fewer
        images fill it round again (the nearest neighbour stays the same)."""
        remembered = torch.cat([F.normalize(self.view_features(x), dim=-1).transpose(0, 1) for x in batches])
        repeats = torch.arange(self.memory_size, device=remembered.device) % len(remembered)
        self.memory.copy_(remembered[repeats].to(self.memory.device))

    def view_distances(self, features):
        """(V, B, C) -> (V, B): 1 - cosine similarity to the same view of the nearest remembered image."""
        memory = self.memory.to(features.dtype).permute(1, 2, 0)  # (V, C, memory)
        similarity = torch.bmm(F.normalize(features, dim=-1), memory)  # (V, B, memory)
        return 1 - similarity.amax(dim=-1)

    def score(self, x):
        return self.scores_and_losses(x)[0]

    def scores_and_losses(self, x):
        """(scores (B,), view losses (V, B)) from one pass of the network."""
        features = self.view_features(x)
        losses = self.view_losses(x, features)
        return (self.view_distances(features) if self.memory_size else losses).sum(dim=0), losses

    def explain(self, x):
        if self.surface:
            with torch.no_grad():
                scores, losses = self.scores_and_losses(x)
                return self.explanation(scores, self._montage(x, torch.exp(-losses)), self.surface.beyond_normal(x))
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            scores, losses = self.scores_and_losses(x)
            (gradient,) = torch.autograd.grad(scores.sum(), x)
        evidence = gradient.abs().sum(dim=1)  # (B, S, S)
        recognised = torch.exp(-losses.detach())  # probability given to the right answer
        result = self.explanation(scores.detach(), self._montage(x.detach(), recognised), evidence)
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
