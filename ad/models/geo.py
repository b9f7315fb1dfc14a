"""Geometric self-supervision: learn to tell which crop of a normal face one is shown.

A network that has learned where and how large a normal face sits in the frame recognises the
views of a normal face and is lost on views of anything else: a face framed or proportioned
differently, or no face at all. The score is how badly it recognises the views (the sum of their
cross-entropies), after GEOM (Golan and El-Yaniv, 2018), which is among the strongest detectors
trained from scratch on normal images alone. GEOM also turns the image by quarter turns; on faces
those views added nothing to the score (measured on faces-dev) and cost 3/10 of the compute.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from ad.models.base import Detector, Explanation
from ad.models.registry import register_model

# Windows (top, left, height, width) on the 64x64 image: centre, shifted up, down, left, right,
# zoomed in, zoomed out. Every view is a real crop: no padding the network could cheat with.
WINDOWS = ((8, 8, 48, 48), (0, 8, 48, 48), (16, 8, 48, 48), (8, 0, 48, 48), (8, 16, 48, 48),
           (14, 14, 36, 36), (0, 0, 64, 64))
EVIDENCE_AT_FULL_HEAT = 6.0  # heat map: share of the evidence per pixel, relative to an even spread


def conv_pool(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


@register_model("geo", order=6)
class TransformPredictor(Detector):
    summary = ("A self-supervised detector: a small network learned to tell which view of a normal "
               "image it is shown; on anything unlike the normal images it cannot, and that is the score.")
    small_config = {"channels": [8, 16, 32], "view_size": 24}
    score_description = (f"how badly it recognises which of {len(WINDOWS)} crops of the image it is "
                         f"shown (the sum of the {len(WINDOWS)} cross-entropies)")
    picture_label = f"The {len(WINDOWS)} views it judged (green: recognised, red: not)"
    heat_title = "Evidence: where the score comes from (input gradient)"
    heat_unit = "share of the evidence per pixel, relative to an even spread"
    heat_full_scale = EVIDENCE_AT_FULL_HEAT

    def __init__(self, *, channels=(16, 32, 64, 128), view_size=24, crop=None):
        super().__init__(crop=crop)
        self.view_size = view_size
        self.num_views = len(WINDOWS)
        layers, c_in = [], 3
        for c in channels:
            layers.append(conv_pool(c_in, c))
            c_in = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, self.num_views)

    def views(self, x):
        """(B, 3, 64, 64) -> (num_views, B, 3, view_size, view_size)."""
        size = (self.view_size, self.view_size)
        return torch.stack([F.interpolate(x[:, :, top:top + h, left:left + w], size=size,
                                          mode="bilinear", align_corners=False, antialias=True)
                            for top, left, h, w in WINDOWS])

    def view_losses(self, x):
        """(num_views, B): cross-entropy of recognising each view of each image."""
        views = self.views(x)
        logits = self.head(self.features(views.flatten(0, 1)))  # (num_views * B, num_views)
        targets = torch.arange(self.num_views, device=x.device).repeat_interleave(len(x))
        return F.cross_entropy(logits, targets, reduction="none").view(self.num_views, len(x))

    def loss(self, x):
        return self.view_losses(x).mean()

    def score(self, x):
        return self.view_losses(x).sum(dim=0)

    def explain(self, x):
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            losses = self.view_losses(x)
            (gradient,) = torch.autograd.grad(losses.sum(), x)
        evidence = gradient.abs().sum(dim=1)  # (B, 64, 64)
        evidence = evidence / evidence.flatten(1).mean(dim=1).clamp_min(1e-12)[:, None, None]
        recognised = torch.exp(-losses.detach())  # probability given to the right answer
        return Explanation(score=losses.detach().sum(dim=0), picture=self._montage(x.detach(), recognised),
                           heat=(evidence / EVIDENCE_AT_FULL_HEAT).clamp(0, 1))

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
