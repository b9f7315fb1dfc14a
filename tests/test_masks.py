"""Ground-truth masks: MVTec AD's layout made here, both ways of naming masks, every refusal, fitting."""

import numpy as np
import pytest
from PIL import Image

from ad.data import load_test_set, open_image
from ad.errors import InputError
from ad.data.masks import find_masks_folder, fit_mask, image_sizes, load_masks

SIZES = {"good/a.png": (4, 6), "good/b.jpg": (5, 5), "crack/c1.jpg": (5, 8), "crack/c2.png": (6, 3)}  # (H, W)


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


@pytest.fixture
def mvtec(tmp_path):
    """test/good (2 images), test/crack (2), ground_truth/crack: c1 named <name>.png (0/255, with a
    resampled edge of 100 and 200), c2 MVTec's way, <name>_mask.png, holding 0/1."""
    rng = np.random.default_rng(0)
    for name, (height, width) in SIZES.items():
        save(tmp_path / "test" / name, rng.integers(0, 256, (height, width, 3)))
    c1 = np.zeros(SIZES["crack/c1.jpg"])
    c1[1:3, 2:5], c1[3, 2], c1[3, 3] = 255, 200, 100
    save(tmp_path / "ground_truth" / "crack" / "c1.png", c1)
    c2 = np.zeros(SIZES["crack/c2.png"])
    c2[4:6, 0] = 1
    save(tmp_path / "ground_truth" / "crack" / "c2_mask.png", c2)
    return tmp_path


def read(root, masks_folder=None):
    test_set = load_test_set(root / "test")
    sizes = image_sizes(root / "test", test_set.names)
    return test_set.names, load_masks(test_set.names, test_set.labels, masks_folder or root / "ground_truth", sizes)


def test_masks_of_both_namings_at_each_images_size(mvtec):
    assert find_masks_folder(mvtec / "test") == mvtec / "ground_truth"
    names, masks = read(mvtec)
    by_name = dict(zip(names, masks))
    assert {name: mask.shape for name, mask in by_name.items()} == SIZES
    assert not by_name["good/a.png"].any() and not by_name["good/b.jpg"].any()
    expected = np.zeros(SIZES["crack/c1.jpg"], bool)
    expected[1:3, 2:5], expected[3, 2] = True, True  # 200 is above 127; 100 is not
    assert (by_name["crack/c1.jpg"] == expected).all()
    assert np.argwhere(by_name["crack/c2.png"]).tolist() == [[4, 0], [5, 0]]  # a 0/1 mask: 1 is a defect


def test_masks_folder_is_found_only_beside_test(mvtec):
    assert find_masks_folder(mvtec / "train") is None
    (mvtec / "ground_truth").rename(mvtec / "masks")
    assert find_masks_folder(mvtec / "test") is None
    assert len(read(mvtec, mvtec / "masks")[1]) == 4  # given explicitly, any name will do


def test_image_sizes_follow_exif_rotation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 8 wide and 5 high, shown turned a quarter: 5 wide, 8 high
    Image.new("RGB", (8, 5)).save(tmp_path / "turned.jpg", exif=exif)
    Image.new("RGB", (8, 5)).save(tmp_path / "plain.jpg")
    assert image_sizes(tmp_path, ["turned.jpg", "plain.jpg"]) == [(8, 5), (5, 8)]


def test_a_missing_mask_names_both_expected_files(mvtec):
    (mvtec / "ground_truth" / "crack" / "c2_mask.png").unlink()
    with pytest.raises(InputError, match=r"crack/c2.png: an anomalous image without a mask.*c2\.png or .*c2_mask\.png"):
        read(mvtec)


def test_a_mask_of_another_size_names_both_sizes(mvtec):
    save(mvtec / "ground_truth" / "crack" / "c1.png", np.zeros((5, 7)))
    with pytest.raises(InputError, match=r"c1.png: the mask is 7x5 but its image is 8x5"):
        read(mvtec)


def test_masks_without_images_are_named_and_counted(mvtec):
    save(mvtec / "ground_truth" / "crack" / "c3.png", np.zeros((5, 5)))
    save(mvtec / "ground_truth" / "hole" / "h1_mask.png", np.zeros((5, 5)))
    with pytest.raises(InputError, match=r"2 mask files match no test image \(crack/c3.png, hole/h1_mask.png\)"):
        read(mvtec)


def test_an_unreadable_mask_and_a_missing_folder_are_refused(mvtec):
    with pytest.raises(InputError, match="no such masks folder"):
        read(mvtec, mvtec / "nowhere")
    (mvtec / "ground_truth" / "crack" / "c1.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"c1.png: not a readable mask image"):
        read(mvtec)


def test_a_normal_image_may_have_an_empty_mask_but_not_a_marked_one(mvtec):
    save(mvtec / "ground_truth" / "good" / "a_mask.png", np.zeros(SIZES["good/a.png"]))
    assert not dict(zip(*read(mvtec)))["good/a.png"].any()
    save(mvtec / "ground_truth" / "good" / "a_mask.png", np.full(SIZES["good/a.png"], 255))
    with pytest.raises(InputError, match=r"a_mask.png: marks 24 defect pixels on good/a.png, which is labelled normal"):
        read(mvtec)


def test_fit_mask_crops_the_centre_or_squashes_the_whole():
    tall = np.zeros((8, 4), bool)
    tall[:2] = True  # a defect along the top border of a tall image
    assert not fit_mask(tall, 4, "centre").any()  # the centre square (rows 2..5) misses it
    assert fit_mask(tall, 4, "whole").tolist() == [[True] * 4] + [[False] * 4] * 3
    wide = np.zeros((4, 8), bool)
    wide[:, :4] = True  # the left half of a wide image
    assert fit_mask(wide, 4, "centre").tolist() == [[True, True, False, False]] * 4  # columns 2..5 kept
    assert fit_mask(wide, 2, "whole").tolist() == [[True, False]] * 2
    with pytest.raises(InputError, match="fit 'stretch'"):
        fit_mask(wide, 4, "stretch")


def test_a_centre_fitted_mask_lies_where_the_image_reader_puts_its_pixels():
    mask = np.zeros((120, 200), bool)
    mask[30:70, 60:110] = True  # straddles the left edge of the centre square (columns 40..159)
    image = open_image(Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)))[..., 0]
    fitted = fit_mask(mask, 64, "centre")
    assert fitted.sum() > 100
    assert ((image > 127) != fitted).mean() < 0.01  # they differ only along the edges (bicubic vs bilinear)
