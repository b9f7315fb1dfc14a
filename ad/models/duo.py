"""Two calibrated detectors in one checkpoint, for the two kinds of anomaly a user brings: `geo` for
things unlike the normal ones (not a face, another kind of garment), `seg` for flaws on normal things
(a crack in a tile).

Neither serves both: geo learns how a normal thing sits in the frame, not what its surface looks like,
and seg finds flaws but not a well-made thing of another kind. Each is calibrated on the held-out
normal images, and the score combines how rare each finds the image among them, as Fisher's method
combines p-values: the sum of -ln(share of normal images that score at least as high). A member's units
and the shape of its scores do not matter, either can raise the alarm, and one member's noise on normal
images costs less than it does with the larger of two scores (benchmarks: README, "Flaws on normal
things"). Where the flaw is comes from seg: its heat map, region and picture.
"""

import math

import torch

from ad.data import CENTRE, IMAGE_SIZE, WHOLE
from ad.errors import InputError
from ad.models.base import CALIBRATION_POINTS, Detector
from ad.models.registry import create_model, register_model
from ad.models.seg import DEFECT_SIZE
from ad.preprocess import resize

TAIL_FROM, TAIL_AT = (round(p / 100 * (CALIBRATION_POINTS - 1)) for p in (90, 99))  # indices into the quantiles
GEO_SIZE = 64  # geo's windows are boxes on the 64x64 image


@register_model("duo", order=8)
class Duo(Detector):
    tagline = "both kinds: unlike the normal ones, or flawed"
    summary = ("Two detectors in one: geo (is this the kind of thing it learned?) and seg (is there a flaw "
               "on it?), each calibrated on normal images; their surprises add up.")
    score_description = ("how rare geo and seg each find the image among their normal images: the sum of "
                         "-ln(share of them scoring at least as high), 4.6 for each member at their 99th percentile")
    picture_label = "Where seg sees a defect (red: likely)"
    heat_title = "Defect probability per pixel (seg)"
    heat_unit = "probability that the pixel is part of a defect"
    heat_full_scale = 1.0
    small_config = {"geo": {"channels": [8, 16, 32], "view_size": 24, "windows": [[0, 0, 64, 64]]},
                    "seg": {"width": 4, "depth": 2}}
    training_defaults = {"image_size": DEFECT_SIZE, "fit": WHOLE, "batch_size": 16, "min_steps": 700}

    def __init__(self, *, geo=None, seg=None, crop=None, image_size=IMAGE_SIZE, fit=CENTRE):
        if crop is not None:
            raise InputError("duo reads the whole picture (a crop would hide flaws from seg); "
                             "for a crop box, train geo or seg")
        super().__init__(input_size=image_size, image_size=image_size, fit=fit)
        for name, options in (("geo", geo), ("seg", seg)):
            if not isinstance(options, (dict, type(None))) or {"image_size", "fit", "crop"} & set(options or {}):
                raise InputError(f"duo's {name}: expected a dict of {name}'s options (its input format is duo's)")
        # Both read the same pictures: geo at its 64 px, seg at image_size (what calibrating each needs).
        self.geo = create_model("geo", **(geo or {}), image_size=image_size, fit=fit)
        self.seg = create_model("seg", **(seg or {}), image_size=image_size, fit=fit)

    @property
    def members(self):
        """The detectors inside (submodules: their weights and calibrations travel in this model's
        safetensors), calibrated before this one, whose score reads their calibrations."""
        return [self.geo, self.seg]

    @property
    def mirror_sensitive(self):
        return any(member.mirror_sensitive for member in self.members)

    def sees(self):
        return f"{super().sees()}; geo at {GEO_SIZE} px ({self.geo.sees()}), seg at {self.image_size} px"

    def loss(self, x):
        return self.geo.loss(resize(x, GEO_SIZE)) + self.seg.loss(x)

    def surprise(self, member, scores):
        """-ln(share of the member's held-out normal images scoring at least as high): 0.7 at their
        median, ln 100 = 4.6 at their 99th percentile. Past it, where a few hundred images say little,
        the tail goes on as an exponential through the 90th and 99th percentiles (each such distance a
        tenth as likely), so the rarest images still rank. Torch operations only (ONNX)."""
        quantiles = member.normal_score_quantiles
        # the share below, interpolated between successive quantiles (continuous, no searchsorted)
        steps = (scores[:, None] - quantiles[None, :-1]) / (quantiles[1:] - quantiles[:-1]).clamp_min(1e-12)
        share_below = steps.clamp(0, 1).mean(dim=1).clamp(max=0.99)
        spread = (quantiles[TAIL_AT] - quantiles[TAIL_FROM]).clamp_min(1e-12)
        tail = math.log(100) + math.log(10) * (scores - quantiles[TAIL_AT]) / spread
        return torch.where(scores > quantiles[TAIL_AT], tail, -torch.log1p(-share_below))

    def combined(self, geo_scores, seg_scores):
        return self.surprise(self.geo, geo_scores) + self.surprise(self.seg, seg_scores)

    def score(self, x):
        return self.combined(self.geo.score(resize(x, GEO_SIZE)), self.seg.score(x))

    @torch.no_grad()
    def explain(self, x):
        flaws = self.seg.explain(x)
        return self.explanation(self.combined(self.geo.score(resize(x, GEO_SIZE)), flaws.score), flaws.picture,
                                flaws.pixels)

