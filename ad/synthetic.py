"""Synthetic defects made from normal images themselves and from noise: what a detector of flaws learns
from (no defect, pretrained weight or texture set is needed), after DRAEM's and NSA's recipes.

A defect is a random region (a smooth blob or a thin curve, of any size from a speck to a third of
the picture) filled with foreign content: a patch of another normal image, the same surface out of
place, recoloured or blurred, or noise, blended in with soft edges. Only what visibly changed is
labelled, so a pasted look-alike is not taught as a defect.
"""

import math

import torch
import torch.nn.functional as F


def smooth_noise(count, size, cells, device):
    """Value noise, (count, size, size): random values on a coarse grid, bicubically upsampled (a
    cheap stand-in for Perlin noise: smooth shapes at the grid's scale)."""
    grid = torch.randn(count, 1, cells + 1, cells + 1, device=device)
    return F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=True)[:, 0]


def blur(x, k=5):
    """(B, C, H, W) box blur of odd width k, edges reflected."""
    return F.avg_pool2d(F.pad(x, [k // 2] * 4, mode="reflect"), k, stride=1)


def random_regions(count, size, device, min_area=0.002, max_area=0.3, curve_share=0.3):
    """(count, size, size) 0/1 masks: blobs (stains, holes, chips) or thin curves (scratches,
    cracks); area log-uniform in [min_area, max_area] of the picture."""
    cells = 2 ** torch.randint(1, 5, (count,))  # 2..16 cells: coarse or fine shapes
    noise = torch.stack([smooth_noise(1, size, int(c), device)[0] for c in cells])
    flat = noise.flatten(1)
    area = torch.exp(torch.empty(count, device=device).uniform_(math.log(min_area), math.log(max_area)))
    rank = (area * flat.shape[1]).long().clamp(min=1)  # keep the top `area` share of each noise map
    threshold = flat.sort(dim=1, descending=True).values.gather(1, rank[:, None] - 1)
    blob = noise >= threshold[:, :, None]
    # thin curves: the zero level set of smooth noise, kept inside one coarse blob so it stays local
    width = torch.empty(count, device=device).uniform_(0.03, 0.12)[:, None, None] * flat.std(1)[:, None, None]
    region = smooth_noise(count, size, 2, device)
    curve = (noise.abs() < width) & (region > torch.quantile(region.flatten(1), 0.85, dim=1)[:, None, None])
    use_curve = (torch.rand(count, device=device) < curve_share)[:, None, None]
    return torch.where(use_curve, curve, blob).float()


def foreign_content(x):
    """(B, C, S, S) in [-1, 1] -> what to paste into each: another normal image (maybe mirrored), the
    same surface moved, recoloured, blurred, or noise around its mean colour."""
    count, channels, size, _ = x.shape
    device = x.device
    other = torch.roll(x, 1, 0)
    other = torch.where(torch.rand(count, 1, 1, 1, device=device) < 0.5, other.flip(-1), other)
    shift = [int(v) for v in torch.randint(size // 8, size - size // 8, (2,))]
    moved = torch.roll(x, shifts=shift, dims=(-2, -1))
    mean = x.mean((1, 2, 3), keepdim=True)
    gain = torch.empty(count, 1, 1, 1, device=device).uniform_(0.3, 1.7)
    offset = torch.empty(count, 1, 1, 1, device=device).uniform_(-0.6, 0.6)
    tint = torch.empty(count, channels, 1, 1, device=device).uniform_(-0.3, 0.3)  # colour for colour products
    recoloured = (x - mean) * gain + mean + offset + tint
    blurred = blur(blur(x, 7), 7)
    cells = int(2 ** torch.randint(3, 7, (1,)))
    noise = (torch.stack([smooth_noise(count, size, cells, device) for _ in range(channels)], 1) * 0.5
             + torch.randn_like(x) * 0.2 + x.mean((2, 3), keepdim=True))
    choices = torch.stack([other, moved, recoloured, blurred, noise])  # (5, B, C, S, S)
    pick = torch.randint(0, len(choices), (count,), device=device)
    return choices[pick, torch.arange(count, device=device)].clamp(-1, 1)


def add_defects(x, share=0.75, min_area=0.002, max_area=0.3, visible_change=0.04):
    """(B, C, S, S) normal images in [-1, 1] -> (images with synthetic defects, masks (B, S, S) 0/1).
    A `share` of the images get one; the rest stay normal, with empty masks."""
    count, _, size, _ = x.shape
    masks = random_regions(count, size, x.device, min_area, max_area)
    masks = masks * (torch.rand(count, 1, 1, device=x.device) < share)
    opacity = torch.empty(count, 1, 1, 1, device=x.device).uniform_(0.3, 1.0)
    alpha = blur(masks[:, None], 3) * opacity  # soft edges: the seam alone must not give it away
    flawed = x * (1 - alpha) + foreign_content(x) * alpha
    if visible_change > 0:  # label only what visibly changed (NSA)
        change = blur((flawed - x).abs().mean(1, keepdim=True), 5)[:, 0]
        masks = masks * (change > visible_change)
    return flawed, masks
