"""ad.data: arrays, images, zips and labels in; clear refusals; preprocessing."""

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ad import InputError
from ad.data import (load_array, load_images, load_labels, load_sources, load_test_set, open_image, parse_crop,
                     preprocess, validate_images)


def png_bytes(image, format="PNG", **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


def test_load_array_is_memory_mapped_and_checked(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    np.save(tmp_path / "set.npy", images)
    loaded = load_array(tmp_path / "set.npy")
    assert isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(loaded, images)


@pytest.mark.parametrize("array, message", [
    (np.zeros((5, 64, 64, 2), np.uint8), r"shape \(5, 64, 64, 2\); expected images, \(N, 64, 64, 3\)"),
    (np.zeros(5, np.uint8), r"shape \(5,\); expected images"),
    (np.zeros((0, 28, 28), np.uint8), "holds no images"),
    (np.full((2, 64, 64, 3), 300.0), "accepted float ranges"),
    (np.full((2, 64, 64, 3), np.nan), "NaN or Inf"),
    (np.zeros((2, 64, 64, 3), np.complex64), "dtype complex64"),
])
def test_bad_arrays_are_refused_with_reasons(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(InputError, match=message):
        load_array(tmp_path / "bad.npy")


@pytest.mark.parametrize("layout", ["grey", "grey with a channel", "channels first", "RGBA", "wide"])
def test_arrays_of_any_layout_and_size_convert_as_image_files_do(tmp_path, layout):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 28, 40, 3), dtype=np.uint8) if layout == "wide" else \
        rng.integers(0, 256, (3, 28, 28, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    array, files = {
        "grey": (grey, [Image.fromarray(g, "L") for g in grey]),
        "grey with a channel": (grey[..., None], [Image.fromarray(g, "L") for g in grey]),
        "channels first": (rgb.transpose(0, 3, 1, 2), [Image.fromarray(x) for x in rgb]),
        "RGBA": (np.concatenate([rgb, np.full_like(rgb[..., :1], 255)], -1), [Image.fromarray(x) for x in rgb]),
        "wide": (rgb, [Image.fromarray(x) for x in rgb]),
    }[layout]
    np.save(tmp_path / "images.npy", array)
    loaded = load_array(tmp_path / "images.npy")
    assert loaded.shape == (3, 64, 64, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, np.stack([open_image(png_bytes(f)) for f in files]))


def test_float_arrays_in_unit_range_are_scaled():
    images = validate_images(np.full((1, 64, 64, 3), 0.5))
    assert images.dtype == np.uint8 and images[0, 0, 0, 0] == 128


def test_pickled_npy_is_refused_and_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))
    np.save(tmp_path / "evil.npy", np.array([Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="pickle"):
        load_array(tmp_path / "evil.npy")
    (tmp_path / "raw.npy").write_bytes(pickle.dumps(Boom()))  # a bare pickle named .npy
    with pytest.raises(InputError, match="not an .npy file"):
        load_array(tmp_path / "raw.npy")
    assert not (tmp_path / "pwned").exists()


def test_truncated_npy_is_refused(tmp_path):
    np.save(tmp_path / "full.npy", np.zeros((10, 64, 64, 3), np.uint8))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:50_000])
    with pytest.raises(InputError, match="truncated|readable"):
        load_array(tmp_path / "cut.npy")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"])
def test_any_image_mode_becomes_64x64_rgb_of_the_same_colour(mode):
    red = Image.new("RGB", (200, 120), (200, 30, 30))
    data = png_bytes(red.convert(mode), "TIFF" if mode == "CMYK" else "PNG")
    array = open_image(data)
    assert array.shape == (64, 64, 3) and array.dtype == np.uint8
    # the mean colour the file holds (palette and 1-bit modes dither)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).reshape(-1, 3).mean(axis=0)
    if mode in ("RGB", "RGBA", "P", "CMYK"):
        assert abs(expected[0] - 200) < 5 and expected[1] < 35  # still red
    np.testing.assert_allclose(array.reshape(-1, 3).mean(axis=0), expected, atol=2)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    image = Image.fromarray(np.full((80, 80), 32768, np.uint16))
    assert abs(int(open_image(png_bytes(image))[0, 0, 0]) - 128) <= 1


def test_exif_rotation_is_applied():
    # A portrait stored sideways: top half red, bottom blue after rotation by the EXIF tag.
    stored = Image.new("RGB", (128, 64))
    stored.paste((255, 0, 0), (0, 0, 64, 64))
    stored.paste((0, 0, 255), (64, 0, 128, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    array = open_image(png_bytes(stored, "JPEG", exif=exif, quality=95))
    assert array.shape == (64, 64, 3)
    # displayed upright, the stored left half (red) is on top; unrotated, colours would split by column
    assert array[5, 10, 0] > 200 and array[5, 10, 2] < 60
    assert array[58, 10, 2] > 200 and array[58, 10, 0] < 60


def test_transparent_pixels_become_white():
    array = open_image(png_bytes(Image.new("RGBA", (64, 64), (0, 0, 0, 0))))
    assert array.min() == 255


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"this is text, not a picture", "not an image"),
])
def test_bad_image_files_are_refused(data, message):
    with pytest.raises(InputError, match=message):
        open_image(data, name="upload.png")


def test_truncated_png_is_refused():
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    with pytest.raises(InputError, match="corrupt or truncated|not an image"):
        open_image(data[: len(data) // 2])


@pytest.mark.parametrize("side", [8_000, 20_000])  # above our limit; above PIL's own bomb limit
def test_huge_dimensions_are_refused_before_decoding(side):
    data = png_bytes(Image.new("1", (side, side)))
    with pytest.raises(InputError, match="too large"):
        open_image(data)


def test_folder_and_zip_give_the_same_images_in_name_order(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    colours = {"b.png": (0, 0, 255), "a.jpg": (255, 0, 0), "c.webp": (0, 255, 0)}
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as archive:
        for name, colour in colours.items():
            image = Image.new("RGB", (90, 90), colour)
            image.save(folder / name)
            archive.writestr(name, (folder / name).read_bytes())
    from_folder, names = load_images(folder)
    from_zip, zip_names = load_images(tmp_path / "imgs.zip")
    assert names == zip_names == ["a.jpg", "b.png", "c.webp"]
    np.testing.assert_array_equal(from_folder, from_zip)
    assert from_folder[0, 10, 10, 0] > 200 and from_folder[1, 10, 10, 2] > 200


@pytest.mark.parametrize("member", ["../evil.png", "/abs.png"])
def test_zip_with_escaping_paths_is_refused(tmp_path, member):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as archive:
        archive.writestr(member, png_bytes(Image.new("RGB", (8, 8))))
    with pytest.raises(InputError, match="absolute or '..' path"):
        load_images(tmp_path / "bad.zip")


def test_zip_without_images_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "none.zip", "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(InputError, match="no images"):
        load_images(tmp_path / "none.zip")


def test_labels_from_npy_and_csv_by_filename_and_id(tmp_path):
    names = ["x.png", "y.png", "z.png"]
    np.save(tmp_path / "labels.npy", np.array([0, 1, 0], np.uint8))
    (tmp_path / "by_name.csv").write_text("filename,label,source\nz.png,0,a\nx.png,0,a\ny.png,1,b\n")
    (tmp_path / "by_id.csv").write_text("id,label\n2,0\n0,0\n1,1\n")
    for file in ("labels.npy", "by_name.csv", "by_id.csv"):
        labels, _ = load_labels(tmp_path / file, names)
        assert labels.tolist() == [0, 1, 0], file
    assert load_labels(tmp_path / "by_name.csv", names)[1].tolist() == ["a", "b", "a"]


@pytest.mark.parametrize("content, message", [
    ("label\n0\n1\n", "2 labels for 3 images|one label per image"),
    ("label\n0\n2\n1\n", "must be 0 .normal. or 1"),
    ("score\n0\n1\n0\n", "no 'label' column"),
    ("filename,label\nx.png,0\ny.png,1\nq.png,0\n", "images without a row"),
])
def test_bad_label_files_are_refused(tmp_path, content, message):
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(InputError, match=message):
        load_labels(tmp_path / "labels.csv", ["x.png", "y.png", "z.png"])


def test_sources_must_match_the_images(tmp_path):
    np.save(tmp_path / "sources.npy", np.array([0, 1, 2]))
    assert load_sources(tmp_path / "sources.npy", 3).tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="3 sources for 4 images"):
        load_sources(tmp_path / "sources.npy", 4)


def test_preprocess_scales_to_minus_one_one_and_crops():
    images = np.zeros((2, 64, 64, 3), np.uint8)
    images[:, 16:48, 16:48] = 255  # white centre square
    x = preprocess(images)
    assert x.shape == (2, 3, 64, 64) and x.min() == -1 and x.max() == 1
    cropped = preprocess(images, crop=(16, 16, 32, 32))
    assert cropped.shape == (2, 3, 64, 64) and torch.allclose(cropped, torch.ones_like(cropped))


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


def test_a_test_set_loads_from_a_folder_with_labels_and_sources_by_file_name(tmp_path):
    folder = tmp_path / "test"
    folder.mkdir()
    for name, colour in {"b.png": (0, 0, 255), "a.png": (255, 0, 0), "c.png": (0, 255, 0)}.items():
        Image.new("RGB", (70, 70), colour).save(folder / name)
    (tmp_path / "labels.csv").write_text("filename,label,source\nc.png,1,green\na.png,0,red\nb.png,1,blue\n")
    test_set = load_test_set(folder, tmp_path / "labels.csv")
    assert test_set.names == ["a.png", "b.png", "c.png"] and test_set.labels.tolist() == [0, 1, 1]
    assert test_set.sources.tolist() == ["red", "blue", "green"] and test_set.images.shape == (3, 64, 64, 3)
    np.save(tmp_path / "sources.npy", np.array([5, 6, 7]))
    assert load_test_set(folder, tmp_path / "labels.csv", tmp_path / "sources.npy").sources.tolist() == [
        "source 5", "source 6", "source 7"]  # bare ids are never shown as bare numbers
    named = load_test_set(folder, tmp_path / "labels.csv", tmp_path / "sources.npy", "5=CelebA, 7=CIFAR-10")
    assert named.sources.tolist() == ["CelebA", "source 6", "CIFAR-10"]
    with pytest.raises(InputError, match="expected ID=NAME pairs"):
        load_test_set(folder, tmp_path / "labels.csv", tmp_path / "sources.npy", "5:CelebA")


def test_a_test_set_needs_labels_of_both_kinds(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((3, 64, 64, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.ones(3, np.uint8))
    with pytest.raises(InputError, match="needs labels"):
        load_test_set(tmp_path / "images.npy", None)
    with pytest.raises(InputError, match="every image has label 1; ROC-AUC needs both"):
        load_test_set(tmp_path / "images.npy", tmp_path / "labels.npy")


def test_a_test_set_in_sub_folders_labels_itself_as_mvtec_does(tmp_path):
    for folder, colour in (("good", (0, 200, 0)), ("scratch", (200, 0, 0)), ("hole", (0, 0, 200))):
        (tmp_path / "test" / folder).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (30, 30), colour).save(tmp_path / "test" / folder / f"{i}.png")
    test_set = load_test_set(tmp_path / "test")
    assert test_set.labels.tolist() == [0, 0, 1, 1, 1, 1]  # good/ normal, in file-name order
    assert test_set.sources.tolist() == ["good", "good", "hole", "hole", "scratch", "scratch"]
    with zipfile.ZipFile(tmp_path / "test.zip", "w") as archive:
        for path in sorted((tmp_path / "test").rglob("*.png")):
            archive.write(path, path.relative_to(tmp_path))  # test/good/0.png, ...
    assert load_test_set(tmp_path / "test.zip").sources.tolist() == test_set.sources.tolist()
    Image.new("RGB", (30, 30)).save(tmp_path / "test" / "loose.png")
    with pytest.raises(InputError, match="'loose.png' lies outside any sub-folder"):
        load_test_set(tmp_path / "test")


def test_a_test_set_without_labels_is_scored_as_it_is_when_labels_are_optional(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((3, 64, 64, 3), np.uint8))
    unlabelled = load_test_set(tmp_path / "images.npy", require_labels=False)
    assert unlabelled.labels is None and unlabelled.names == ["0", "1", "2"]
    for folder in ("cats", "dogs"):  # sub-folders, none of them good/: kinds, not labels
        (tmp_path / "photos" / folder).mkdir(parents=True)
        Image.new("RGB", (30, 30)).save(tmp_path / "photos" / folder / "a.png")
    assert load_test_set(tmp_path / "photos", require_labels=False).labels is None
    (tmp_path / "photos" / "good").mkdir()
    Image.new("RGB", (30, 30)).save(tmp_path / "photos" / "good" / "b.png")
    assert load_test_set(tmp_path / "photos", require_labels=False).labels.tolist() == [1, 1, 0]
