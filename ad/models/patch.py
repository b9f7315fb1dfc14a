"""A patch memory: how far each neighbourhood of a picture lies from the nearest neighbourhood of any
normal picture, after PatchCore (Roth et al. 2022), with statistics of the surface in place of its
pretrained network (none can be had here).

Each neighbourhood is described by its brightness, contrast, edges and colour in boxes from 3 to 63
pixels wide (at most half the picture). Brightness is measured against the picture's own median and
quartiles, so a lighter photo of a normal part is normal, and a flaw, which hardly moves them, does
not make the rest of its picture look abnormal (a mean and spread do: one dark stain lit the whole
picture). Training only remembers normal neighbourhoods, nothing is learned by gradient: from a
random sample of them, eight per place in the memory, it keeps those that cover the sample best
(PatchCore's coreset: each pick the one farthest from all picked before), so a rare normal
neighbourhood is kept where a random sample would miss it (on tiles all three figures rose). A
flaw, a crack or a faint uneven band alike, is a neighbourhood unlike all of them, wherever it
lies; so the heat map marks the insides of large flaws as well as their outlines, where a segmenter
trained on made-up defects marks mostly the outlines; but it also marks the normal surface around a
flaw, within half the widest box (README: the defect benchmark).
"""

import math

import torch
import torch.nn.functional as F

from ad.data import CENTRE, IMAGE_SIZE, WHOLE
from ad.errors import InputError
from ad.models.base import Detector, marked_in_red, mean_of_highest
from ad.models.registry import register_model

SCALES = (3, 7, 15, 31, 63)  # px: a pit, a scratch, a stain, a band; each an odd box width
EDGE_SCALES = 3  # edge statistics at the three finest scales only (coarser, they repeat the contrast)
QUERY_CHUNK = 2048  # neighbourhoods compared with the memory at once: (2048 x memory_size) distances in memory
EXPORT_DISTANCES = 2 ** 28  # an ONNX graph compares a whole batch at once: about 1 GB of distances at most
MIN_FEATURE_SPREAD = 0.1  # a statistic constant on normal pictures (colour of a grey part) is not blown up
CANDIDATES_PER_PLACE = 8  # normal neighbourhoods sampled per place in the memory, for the coreset to choose from


def box_sums(x, k):
    """The sum over a k x k box around each pixel (zeros past the edge), from running sums: the same
    few operations at any k."""
    r = k // 2
    running = F.pad(x, (r + 1, r, r + 1, r)).cumsum(dim=2).cumsum(dim=3)
    return running[..., k:, k:] - running[..., :-k, k:] - running[..., k:, :-k] + running[..., :-k, :-k]


def box_mean(x, k):
    """The mean over a k x k box around each pixel, the picture's edge not counted."""
    inside = box_sums(torch.ones_like(x[:1, :1]), k)
    return box_sums(x, k) / inside


def surface_statistics(x, scales=SCALES):
    """(B, 3, S, S) pictures in [-1, 1] -> (B, C, S, S): per pixel, its neighbourhoods' brightness
    and contrast at each scale (brightness against the picture's median, in its interquartile
    range), the mean strength of horizontal and vertical edges at the finest scales, and its colour
    (red and blue against green)."""
    grey = x.mean(dim=1, keepdim=True)
    ranked = grey.flatten(1).sort(dim=1).values  # the median and quartiles, which a flaw hardly moves
    last = int(ranked.shape[1]) - 1  # (a constant in an exported graph: its pictures are S x S)
    quarter, half, three_quarters = (ranked[:, [round(q * last)]] for q in (0.25, 0.5, 0.75))
    grey = (grey - half[..., None, None]) / (three_quarters - quarter).clamp_min(1e-2)[..., None, None]
    across = F.pad((grey[..., :, 1:] - grey[..., :, :-1]).abs(), (0, 1))
    down = F.pad((grey[..., 1:, :] - grey[..., :-1, :]).abs(), (0, 0, 0, 1))
    colour = torch.cat([x[:, :1] - x[:, 1:2], x[:, 2:3] - x[:, 1:2]], dim=1)
    features = []
    for i, k in enumerate(scales):
        mean = box_mean(grey, k)
        features += [mean, (box_mean(grey * grey, k) - mean * mean).clamp_min(0).sqrt(), box_mean(colour, k)]
        if i < EDGE_SCALES:
            features += [box_mean(across, k), box_mean(down, k)]
    return torch.cat(features, dim=1)


def coreset(points, size, generator):
    """The indices of `size` of the (N, C) points that cover them best, greedily (k-centre, as
    PatchCore builds its memory): each pick is the point farthest from all picked before; and each
    point's distance to the nearest pick."""
    norms = points.pow(2).sum(dim=1)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = torch.randint(len(points), (1,), generator=generator)
    nearest = torch.full_like(norms, float("inf"))  # each point's squared distance to the nearest pick
    for i in range(1, size + 1):
        last = chosen[i - 1]
        # |x - p|^2 = |x|^2 - 2 x.p + |p|^2, in one fused product over all points
        torch.minimum(nearest, torch.addmv(norms, points, points[last], alpha=-2).add_(norms[last]), out=nearest)
        if i < size:
            chosen[i] = nearest.argmax()
    return chosen, nearest.clamp_min(0).sqrt()


def feature_count(scales):
    return 4 * len(scales) + 2 * min(EDGE_SCALES, len(scales))


@register_model("patch", order=8)
class PatchMemory(Detector):
    tagline = "is this surface like any normal one?"
    summary = ("A patch memory: it remembers the neighbourhoods of normal images (brightness, contrast, edges "
               "and colour at up to five scales); each pixel's heat is how far its neighbourhood lies from "
               "the nearest one.")
    score_description = ("the mean distance to the nearest normal neighbourhood of the most unusual 1% of pixels, "
                         "less a typical normal neighbourhood's")
    picture_label = "Where the surface is unlike any normal one (red)"
    heat_title = "Distance to the nearest normal neighbourhood"
    heat_unit = "distance in standardised surface statistics, beyond a typical normal neighbourhood's"
    small_config = {"memory_size": 2000}
    training_defaults = {"image_size": 128, "fit": WHOLE}
    remembers, learns_by_gradient = True, False

    def __init__(self, *, scales=SCALES, stride=4, memory_size=16000, smooth=9, top_share=0.01, crop=None,
                 input_size=None, image_size=IMAGE_SIZE, fit=CENTRE):
        super().__init__(crop=crop, input_size=input_size or image_size, image_size=image_size, fit=fit)
        if not scales or any(int(k) < 1 or int(k) % 2 == 0 for k in scales):
            raise InputError(f"patch's scales {list(scales)}: expected odd box widths in pixels, such as 3, 7, 15")
        # a box wider than half the picture describes the picture, not a neighbourhood: not used
        self.scales = tuple(int(k) for k in scales if k <= self.input_size // 2) or (int(min(scales)),)
        if not 1 <= stride <= self.input_size // 4:
            raise InputError(f"patch's stride {stride}: expected 1 to {self.input_size // 4} px "
                             f"at {self.input_size} px")
        if not isinstance(memory_size, int) or memory_size < 1:
            raise InputError(f"patch's memory_size {memory_size!r}: expected a whole number of "
                             "neighbourhoods, 1 or more")
        self.stride, self.smooth, self.top_share = stride, smooth, top_share
        count = feature_count(self.scales)
        # What training remembers; it travels in model.safetensors like the calibration.
        self.register_buffer("memory", torch.zeros(memory_size, count))
        self.register_buffer("feature_mean", torch.zeros(count))
        self.register_buffer("feature_spread", torch.ones(count))
        # How far a normal neighbourhood the memory did not keep typically lies from it (the median):
        # pixels are read beyond it, so a normal surface is dark in the heat map (0 when all is kept)
        self.register_buffer("normal_distance", torch.zeros(()))

    @property
    def heat_full_scale(self):
        return self.normal_peak()

    @property
    def max_batch(self):
        """The most images an exported graph should score at once (each holds positions x memory distances)."""
        positions = (self.input_size // self.stride) ** 2
        return max(1, EXPORT_DISTANCES // (positions * len(self.memory)))

    def raw_features(self, x):  # (B, 3, S, S) -> (B, C, S / stride, S / stride)
        return F.avg_pool2d(surface_statistics(x, self.scales), self.stride)

    @torch.no_grad()
    def remember(self, batches, image_count, seed=0):
        """Fill the memory with the coreset of a random sample of the normal neighbourhoods in
        `batches` (model inputs, `image_count` images in all), each statistic standardised over them."""
        generator = torch.Generator().manual_seed(seed)
        size, per_image, sample = len(self.memory), None, []
        for x in batches:
            features = self.raw_features(x).flatten(2).transpose(1, 2).cpu()  # (B, positions, C)
            if per_image is None:  # the candidates, spread over every image
                per_image = min(features.shape[1], math.ceil(CANDIDATES_PER_PLACE * size / image_count))
            picks = torch.rand(features.shape[:2], generator=generator).argsort(dim=1)[:, :per_image]
            sample.append(features.gather(1, picks[..., None].expand(-1, -1, features.shape[2])).flatten(0, 1))
        sample = torch.cat(sample)
        mean, spread = sample.mean(dim=0), sample.std(dim=0).clamp_min(MIN_FEATURE_SPREAD)
        self.feature_mean.copy_(mean)
        self.feature_spread.copy_(spread)
        sample = (sample - mean) / spread
        if len(sample) > size:
            chosen, nearest = coreset(sample, size, generator)
            left_out = torch.ones(len(sample), dtype=torch.bool)
            left_out[chosen] = False
            self.normal_distance.fill_(nearest[left_out].median())
        else:  # a few images: all of it, some twice
            chosen = torch.arange(size) % len(sample)
            self.normal_distance.zero_()
        self.memory.copy_(sample[chosen].to(self.memory.device))

    def distances(self, x):  # (B, 3, S, S) -> (B, S, S): each pixel's distance to the nearest remembered
        features = self.raw_features(x)
        batch, count, height, width = features.shape
        queries = (features.flatten(2).transpose(1, 2) - self.feature_mean) / self.feature_spread
        queries = queries.reshape(-1, count)
        memory_norms = self.memory.pow(2).sum(dim=1)
        # |q - m|^2 = |q|^2 + (|m|^2 - 2 q.m): the bracket in one fused product, its minimum per query
        # (an ONNX graph cannot split a batch of unknown size: it compares all at once, see max_batch)
        chunks = [queries] if torch.onnx.is_in_onnx_export() else queries.split(QUERY_CHUNK)
        nearest = torch.cat([torch.addmm(memory_norms, chunk, self.memory.T, alpha=-2).amin(dim=1)
                             for chunk in chunks]) + queries.pow(2).sum(dim=1)
        grid = nearest.clamp_min(0).sqrt().reshape(batch, 1, height, width)
        grid = F.interpolate(grid, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.smooth > 1:
            grid = F.avg_pool2d(F.pad(grid, [self.smooth // 2] * 4, mode="replicate"), self.smooth, stride=1)
        return grid[:, 0]

    def beyond_normal(self, x):
        """Each pixel's distance to the memory, less a typical normal neighbourhood's: the same ranks
        (pixels and images alike), a dark heat map where the surface is normal."""
        return self.distances(x) - self.normal_distance

    def loss(self, x):
        """The mean distance of the pictures' neighbourhoods to the memory (the held-out loss training reports)."""
        return self.distances(x).mean()

    def score(self, x):
        return mean_of_highest(self.beyond_normal(x), self.top_share)

    @torch.no_grad()
    def explain(self, x):
        distances = self.beyond_normal(x)
        picture = marked_in_red(x, (distances / self.heat_full_scale).clamp(0, 1))
        return self.explanation(mean_of_highest(distances, self.top_share), picture, distances)
