"""How a read image becomes a model's input: the crop box, scaling to [-1, 1] and the resize.

The image is already a uint8 square of the model's image_size (ad.data reads it so); this is what
follows, in torch operations only, so an ONNX export carries it.
"""

import functools

import numpy as np
import torch
import torch.nn.functional as F

from ad.data import IMAGE_SIZE
from ad.errors import InputError

MIN_CROP = 4  # pixels a side: a smaller box holds nothing to judge


def parse_crop(text, image_size=IMAGE_SIZE):
    """'T,L,H,W' -> (top, left, height, width) on the image_size square, checked to lie inside it
    (image_size None: the syntax alone, for a flag read before the model is known)."""
    if text is None or text == "" or text == []:
        return None
    try:
        crop = tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        raise InputError(f"crop '{text}': expected four integers TOP,LEFT,HEIGHT,WIDTH") from None
    if len(crop) != 4:
        raise InputError(f"crop '{text}': expected four integers TOP,LEFT,HEIGHT,WIDTH")
    top, left, height, width = crop
    if top < 0 or left < 0 or height < MIN_CROP or width < MIN_CROP:
        raise InputError(f"crop {crop}: expected TOP and LEFT of at least 0, a box at least {MIN_CROP}x{MIN_CROP}")
    if image_size is not None and (top + height > image_size or left + width > image_size):
        raise InputError(f"crop {crop}: the box must lie inside the {image_size}x{image_size} image "
                         f"and be at least {MIN_CROP}x{MIN_CROP}")
    return crop


def crop_box(text):
    """parse_crop's syntax alone (command-line flags); the model checks the box against its image_size."""
    return parse_crop(text, image_size=None)


def preprocess(images, crop=None, size=IMAGE_SIZE, device="cpu"):
    """uint8 (B, S, S, 3) -> float (B, 3, size, size) in [-1, 1]: cropped, then resized to size.

    A 32x32 crop read at size 32 keeps every pixel it has and costs a quarter of the compute of
    blowing it up to 64, with no information added by the blow-up.
    """
    x = torch.from_numpy(np.array(images, dtype=np.uint8)).to(device)  # a copy: memmaps are read-only
    return tensor_to_model_input(x, crop, size)


def tensor_to_model_input(x, crop=None, size=IMAGE_SIZE):
    """preprocess on a uint8 tensor: torch operations only, so an ONNX export carries them."""
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, C, H, W)
    if crop is not None:
        top, left, height, width = crop
        x = x[:, :, top:top + height, left:left + width]
    if x.shape[-2:] != (size, size):
        x = resize(x, size)
    return x.contiguous()


@functools.cache
def _resize_weights(source, target):
    """(target, source): antialiased bilinear resizing of one axis as a matrix, read off
    F.interpolate applied to the unit vectors."""
    with torch.inference_mode(False):  # cached for all later calls: gradients (geo's heat map) included
        unit = torch.eye(source).view(source, 1, 1, source)
        return F.interpolate(unit, size=(1, target), mode="bilinear", align_corners=False, antialias=True)[:, 0, 0].T


def resize(x, size):
    """(B, C, H, W) -> (B, C, size, size), antialiased bilinear: what F.interpolate(..., antialias=True)
    computes, written as two matrix products so that an ONNX export (`ad export`) keeps it."""
    rows = _resize_weights(int(x.shape[-2]), size).to(x)  # int(): under ONNX tracing, sizes are tensors
    columns = _resize_weights(int(x.shape[-1]), size).to(x)
    return rows @ x @ columns.T
