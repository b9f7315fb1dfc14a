"""A defect segmenter: a small U-Net that learned, from normal images with synthetic defects pasted in,
to mark the pixels that do not belong, after DRAEM (Zavrtanik et al. 2021), trained from scratch.

With `reconstructor_width` set, DRAEM's reconstructive network comes first: an encoder-decoder
without skips (it cannot copy a flaw through) rebuilds a normal-looking version of the picture, and
the segmenter reads the picture beside it. Alone, the segmenter marks the outlines of large flaws but
not their insides, where the surface looks locally normal. On tiles the rebuild lifts pixel ROC-AUC
(0.56 -> 0.58 in duo) for a third more training time and no better image ROC-AUC or AUPRO, so it is
off by default (README: the defect benchmark).

Its heat map is the probability that each pixel is part of a defect, the same scale for every image,
so it points at a flaw rather than at the image's own busiest part; the image score is the mean of
the most suspicious 1% of pixels, so one small flaw counts and one noisy pixel does not.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ad.data import CENTRE, IMAGE_SIZE, WHOLE
from ad.errors import InputError
from ad.models.base import Detector, marked_in_red, mean_of_highest
from ad.models.registry import register_model
from ad.synthetic import add_defects, blur

DEFECT_SIZE = 128  # px: a crack must stay a few pixels wide, and 2 CPU cores must train it in minutes
GROUPS = 4  # GroupNorm: the same in training and in use, at the small batches a CPU trains on
# How a convolution continues the picture past its edge. Reflection continues the surface, where zeros
# meet it with a flat border that the U-Net must learn is normal (tiles: pixel ROC-AUC and AUPRO up
# in two trainings of two; README, the defect benchmark).
PADDINGS = ("reflect", "zeros")


def double_conv(c_in, c_out, padding):
    norm = lambda: nn.GroupNorm(math.gcd(GROUPS, c_out), c_out)  # noqa: E731  (any width)
    conv = lambda c: nn.Conv2d(c, c_out, 3, padding=1, padding_mode=padding, bias=False)  # noqa: E731
    return nn.Sequential(conv(c_in), norm(), nn.ReLU(inplace=True), conv(c_out), norm(), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """The deep levels see a wide context (what is normal here), the skips keep the pixels' detail."""

    def __init__(self, *, width, depth, c_in=3, c_out=1, skips=True, padding="reflect"):
        super().__init__()
        channels = [width * 2 ** i for i in range(depth + 1)]
        self.skips = skips  # without: an encoder-decoder, which must rebuild from what it understood
        self.down = nn.ModuleList([double_conv(c_in, channels[0], padding)]
                                  + [double_conv(channels[i], channels[i + 1], padding) for i in range(depth)])
        self.up = nn.ModuleList([double_conv(channels[i + 1] + channels[i] * skips, channels[i], padding)
                                 for i in reversed(range(depth))])
        self.head = nn.Conv2d(channels[0], c_out, 1)

    def forward(self, x):  # (B, c_in, S, S) -> (B, c_out, S, S)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1) if self.skips else x)
        return self.head(x)


@register_model("seg", order=7)
class DefectSegmenter(Detector):
    tagline = "finds flaws: where is the defect?"
    summary = ("A defect segmenter: a small U-Net trained on normal images with synthetic defects pasted in "
               "marks each pixel that does not belong; its score is how strongly the worst pixels are marked.")
    score_description = "the mean defect probability of the most suspicious 1% of pixels"
    picture_label = "Where it sees a defect (red: likely)"
    heat_title = "Defect probability per pixel"
    heat_unit = "probability that the pixel is part of a defect"
    heat_full_scale = 1.0
    small_config = {"width": 4, "depth": 2}
    training_defaults = {"image_size": DEFECT_SIZE, "fit": WHOLE, "batch_size": 16, "min_steps": 700}

    def __init__(self, *, width=8, depth=4, reconstructor_width=0, padding="reflect", defect_share=0.75,
                 min_area=0.002, max_area=0.3, focal_gamma=2.0, top_share=0.01, smooth=5, crop=None, input_size=None,
                 image_size=IMAGE_SIZE, fit=CENTRE):
        super().__init__(crop=crop, input_size=input_size or image_size, image_size=image_size, fit=fit)
        if padding not in PADDINGS:
            raise InputError(f"seg's padding {padding!r}: expected one of {', '.join(PADDINGS)}")
        if padding == "reflect" and self.input_size >> depth < 2:  # reflection needs 2 px at the deepest level
            raise InputError(f"seg at {self.input_size} px with depth {depth}: the deepest level would be "
                             f"under 2 px; expected a depth of at most {max(0, self.input_size.bit_length() - 2)}")
        # reconstructor_width=0: the segmenter alone, on the picture alone (the default)
        self.reconstructor = (UNet(width=reconstructor_width, depth=depth, c_out=3, skips=False, padding=padding)
                              if reconstructor_width else None)
        self.net = UNet(width=width, depth=depth, c_in=6 if self.reconstructor else 3, padding=padding)
        self.defect_share, self.min_area, self.max_area = defect_share, min_area, max_area
        self.focal_gamma, self.top_share, self.smooth = focal_gamma, top_share, smooth

    @classmethod
    def upgrade_options(cls, options, written_in):
        """Checkpoints written before `padding` was an option (config format 1) padded by zeros."""
        return {"padding": "zeros", **options} if written_in < 2 else options

    def loss(self, x):
        """Focal loss on the synthetic defects' masks (most pixels are easy normal ones), and the
        reconstructor's squared error against the picture before its defect was made."""
        flawed, masks = add_defects(x, self.defect_share, self.min_area, self.max_area)
        logits, rebuilt = self.logits(flawed)
        bce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
        focal = ((1 - torch.exp(-bce)) ** self.focal_gamma * bce).mean() * 10
        return focal if rebuilt is None else focal + F.mse_loss(rebuilt, x) * 10

    def logits(self, x):  # (B, 3, S, S) -> (defect logits (B, S, S), the rebuilt picture or None)
        if self.reconstructor is None:
            return self.net(x)[:, 0], None
        rebuilt = self.reconstructor(x)
        return self.net(torch.cat([x, rebuilt], 1))[:, 0], rebuilt

    def defect_probability(self, x):  # (B, 3, S, S) -> (B, S, S) in [0, 1]
        probability = torch.sigmoid(self.logits(x)[0])[:, None]
        return (blur(probability, self.smooth) if self.smooth > 1 else probability)[:, 0]

    def score(self, x):
        return mean_of_highest(self.defect_probability(x), self.top_share)

    @torch.no_grad()
    def explain(self, x):
        probability = self.defect_probability(x)
        score = mean_of_highest(probability, self.top_share)
        return self.explanation(score, marked_in_red(x, probability), probability)
