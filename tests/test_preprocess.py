"""ad.preprocess: a read image becomes a model's input: scaled to [-1, 1], its crop box, its size."""

import numpy as np
import pytest
import torch

from ad import InputError
from ad.data import IMAGE_SIZE
from ad.preprocess import crop_box, parse_crop, preprocess


def test_preprocess_scales_to_minus_one_one_and_crops():
    images = np.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    images[:, 16:48, 16:48] = 255  # white centre square
    x = preprocess(images)
    assert x.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE) and x.min() == -1 and x.max() == 1
    cropped = preprocess(images, crop=(16, 16, 32, 32))
    assert cropped.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE) and torch.allclose(cropped, torch.ones_like(cropped))


def test_a_crop_read_at_its_own_size_keeps_its_pixels_exactly():
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    x = preprocess(images, crop=(16, 8, 32, 32), size=32)
    assert x.shape == (2, 3, 32, 32)
    expected = torch.from_numpy(images[:, 16:48, 8:40]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(x, expected)
    assert preprocess(images, size=32).shape == (2, 3, 32, 32)  # the whole image, shrunk


@pytest.mark.parametrize("text", ["1,2,3", "0,0,80,10", "a,b,c,d", "-1,0,10,10"])
def test_bad_crop_boxes_are_refused(text):
    with pytest.raises(InputError, match="crop"):
        parse_crop(text)


def test_a_crop_box_lies_on_the_square_the_model_reads():
    assert parse_crop("0,0,128,100", image_size=128) == (0, 0, 128, 100)
    with pytest.raises(InputError, match=f"inside the {IMAGE_SIZE}x{IMAGE_SIZE} image"):
        parse_crop("0,0,128,100")
    assert crop_box("0,0,128,100") == (0, 0, 128, 100)  # a flag, before the model's size is known
    with pytest.raises(InputError, match="at least 4x4"):
        crop_box("0,0,2,100")
