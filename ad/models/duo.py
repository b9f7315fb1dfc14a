"""Two calibrated detectors in one checkpoint, for the two kinds of anomaly a user brings: `geo` for
things unlike the normal ones (not a face, another kind of garment), `seg` for flaws on normal things
(a crack in a tile); and a patch memory that helps show where a flaw is.

Neither serves both: geo learns how a normal thing sits in the frame, not what its surface looks like,
and seg finds flaws but not a well-made thing of another kind. Each is calibrated on the held-out
normal images, and the score combines how rare each finds the image among them, as Fisher's method
combines p-values: the sum of -ln(share of normal images that score at least as high). A member's units
and the shape of its scores do not matter, either can raise the alarm, and one member's noise on normal
images costs less than it does with the larger of two scores (benchmarks: README, "Flaws on normal
things").

Where the flaw is, seg and the patch memory say together: seg marks small flaws and the outlines of
large ones, the memory also their insides. Each one's per-pixel score is read in multiples of the
highest one on its normal images (at their 99th percentile), and the two add up. The memory does not
add to the score: on tiles it lowered duo's image ROC-AUC a little (README, the defect benchmark).
"""

import torch

from ad.data import CENTRE, IMAGE_SIZE, WHOLE
from ad.errors import InputError
from ad.models.base import Detector, check_member_options, marked_in_red
from ad.models.registry import create_model, register_model
from ad.models.geo import TransformPredictor
from ad.models.patch import PatchMemory
from ad.models.seg import DEFECT_SIZE, DefectSegmenter
from ad.preprocess import resize

GEO_SIZE = 64  # geo's windows are boxes on the 64x64 image


@register_model("duo", order=9)
class Duo(Detector):
    tagline = "both kinds: unlike the normal ones, or flawed"
    summary = ("Two detectors in one: geo (is this the kind of thing it learned?) and seg (is there a flaw "
               "on it?), each calibrated on normal images; their surprises add up, and a patch memory helps "
               "seg show where the flaw is.")
    score_description = ("how rare geo and seg each find the image among their normal images: the sum of "
                         "-ln(share of them scoring at least as high), 4.6 for each member at their 99th percentile")
    picture_label = "Where seg and the patch memory see a defect (red: likely)"
    heat_title = "Defect evidence per pixel (seg and the patch memory)"
    heat_unit = "seg's and the patch memory's pixel scores, each in multiples of its normal images' highest, added"
    small_config = {"geo": {**TransformPredictor.small_config, "surface": None}, "seg": DefectSegmenter.small_config,
                    "patch": PatchMemory.small_config}
    training_defaults = {"image_size": DEFECT_SIZE, "fit": WHOLE, "batch_size": 16, "min_steps": 700}

    def __init__(self, *, geo=None, seg=None, patch=None, crop=None, image_size=IMAGE_SIZE, fit=CENTRE):
        if crop is not None:
            raise InputError("duo reads the whole picture (a crop would hide flaws from seg); "
                             "for a crop box, train geo or seg")
        super().__init__(input_size=image_size, image_size=image_size, fit=fit)
        for name, options in (("geo", geo), ("seg", seg), ("patch", patch)):
            if name == "patch" and options is False:  # no memory (a checkpoint of config format 1 or 2)
                continue
            check_member_options(options, f"duo's {name}: expected a dict of {name}'s options (its input format "
                                 "is duo's)" + (", or false for none" if name == "patch" else ""))
        # All read the same pictures: geo at its 64 px, the others at image_size (what calibrating each needs).
        # geo scores by its memory, as on its own (on tiles duo's image ROC-AUC rose to 0.89 from 0.86),
        # and shows no surface of its own: the patch memory does that here
        self.geo = create_model("geo", **{"surface": None, **(geo or {})}, image_size=image_size, fit=fit)
        self.seg = create_model("seg", **(seg or {}), image_size=image_size, fit=fit)
        self.patch = None if patch is False else create_model("patch", **(patch or {}), image_size=image_size,
                                                              fit=fit)

    @classmethod
    def upgrade_options(cls, options, written_in):
        """Before format 5 its geo scored by its cross-entropies; before 3 a duo had no patch memory;
        before 2 its seg padded by zeros."""
        options = {**({"patch": False} if written_in < 3 else {}), **options}
        geo = {**({"memory_size": 0} if written_in < 5 else {}), **(options.get("geo") or {})}
        return {**options, "geo": geo or None,
                "seg": DefectSegmenter.upgrade_options(options.get("seg") or {}, written_in) or None}

    @property
    def members(self):
        """The detectors inside (submodules: their weights and calibrations travel in this model's
        safetensors), calibrated before this one, whose score reads their calibrations."""
        return [self.geo, self.seg] + ([self.patch] if self.patch else [])

    @property
    def mirror_sensitive(self):
        return any(member.mirror_sensitive for member in self.members)

    @property
    def heat_full_scale(self):
        """seg's probability without a memory; with one, its own normal peak (before calibration, its
        two members' added)."""
        return 1.0 if self.patch is None else self.normal_peak(fallback=2.0)

    def sees(self):
        memory = f", the patch memory at {self.image_size} px" if self.patch else ""
        return f"{super().sees()}; geo at {GEO_SIZE} px ({self.geo.sees()}), seg at {self.image_size} px{memory}"

    def loss(self, x):
        return self.geo.loss(resize(x, GEO_SIZE)) + self.seg.loss(x)

    def geo_score(self, x):
        return self.geo.score(resize(x, GEO_SIZE))

    def combined(self, geo_scores, seg_scores):
        """Fisher's method: the members' surprises (Detector.surprise) add up."""
        return self.geo.surprise(geo_scores) + self.seg.surprise(seg_scores)

    def score(self, x):
        return self.combined(self.geo_score(x), self.seg.score(x))

    @torch.no_grad()
    def explain(self, x):
        flaws = self.seg.explain(x)
        score = self.combined(self.geo_score(x), flaws.score)
        if self.patch is None:
            return self.explanation(score, flaws.picture, flaws.pixels)
        pixels = flaws.pixels / self.seg.normal_peak() + self.patch.beyond_normal(x) / self.patch.normal_peak()
        return self.explanation(score, marked_in_red(x, (pixels / self.heat_full_scale).clamp(0, 1)), pixels)
