"""ad.data: arrays, images, zips and labels in, at an input format; clear refusals."""

import io
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from ad import InputError
from ad.data import (CENTRE, IMAGE_SIZE, MAX_IMAGE_SIZE, WHOLE, load_array, load_images, load_labels, load_sources,
                     load_test_set, open_image, standardize_images, validate_images)
from conftest import ROOT


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
    assert loaded.shape == (3, IMAGE_SIZE, IMAGE_SIZE, 3) and loaded.dtype == np.uint8
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


def bar_near_the_left_border():
    """A 40x120 (height x width) dark picture with a bright bar in its first 6 columns."""
    pixels = np.full((40, 120, 3), 20, np.uint8)
    pixels[:, :6] = 250
    return png_bytes(Image.fromarray(pixels))


def test_a_wide_picture_read_whole_keeps_what_lies_near_its_border():
    whole = open_image(bar_near_the_left_border(), size=32, fit=WHOLE)
    centre = open_image(bar_near_the_left_border(), size=32, fit=CENTRE)
    assert whole.shape == centre.shape == (32, 32, 3)
    assert whole[:, 0].min() > 200 and whole[:, 8:].max() < 40  # the bar, squeezed into the first columns
    assert centre.max() < 40  # the centre square never reaches the bar


def test_every_reader_takes_the_input_format(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "bar.png").write_bytes(bar_near_the_left_border())
    for source in (folder, folder / "bar.png"):
        images, names = load_images(source, size=48, fit=WHOLE)
        assert images.shape == (1, 48, 48, 3) and names == ["bar.png"] and images[0, :, 0].min() > 200
    np.save(tmp_path / "wide.npy", np.asarray(Image.open(folder / "bar.png"))[None])
    np.testing.assert_array_equal(load_array(tmp_path / "wide.npy", size=48, fit=WHOLE), images)


def test_arrays_at_the_format_stay_memory_mapped_and_others_are_converted(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "set.npy", images)
    assert isinstance(load_array(tmp_path / "set.npy", size=32), np.memmap)  # HW8's case at its own size
    assert standardize_images(np.load(tmp_path / "set.npy", mmap_mode="r"), size=32).base is not None
    assert load_array(tmp_path / "set.npy").shape == (3, IMAGE_SIZE, IMAGE_SIZE, 3)  # resized as files are
    with pytest.raises(InputError, match=r"expected \(N, 32, 32, 3\).*size=32"):
        validate_images(images[:, :16], size=32)


@pytest.mark.parametrize("size, fit, message", [
    (8, CENTRE, f"image_size 8: expected a whole number of pixels from 16 to {MAX_IMAGE_SIZE}"),
    (64.0, CENTRE, "image_size 64.0"),
    (64, "stretch", "fit 'stretch': expected one of centre, whole"),
])
def test_an_input_format_that_makes_no_sense_is_refused(size, fit, message):
    with pytest.raises(InputError, match=message):
        open_image(bar_near_the_left_border(), size=size, fit=fit)


@pytest.mark.parametrize("pixels, expected", [
    (np.full((8, 8, 3), 0.5), 128),  # floats in [0, 1] are scaled by 255
    (np.full((8, 8, 3), 200.0), 200),  # floats in [0, 255] are taken as they are
    (np.full((8, 8, 3), 7, np.int64), 7),
])
def test_one_rule_turns_pixel_values_into_uint8_for_arrays_and_single_images(pixels, expected):
    assert open_image(pixels, size=16)[0, 0, 0] == expected
    assert validate_images(np.broadcast_to(pixels[:1, :1], (1, IMAGE_SIZE, IMAGE_SIZE, 3)))[0, 0, 0, 0] == expected


@pytest.mark.parametrize("pixels, message", [
    (np.full((8, 8, 3), 300.0), r"float values span \[300, 300\]; accepted float ranges are \[0, 1\] and \[0, 255\]"),
    (np.full((8, 8, 3), -1.0), r"float values span \[-1, -1\]"),
    (np.full((8, 8, 3), 256, np.int32), r"integer values span \[256, 256\]; expected 0..255"),
])
def test_pixel_values_out_of_range_are_refused_never_clipped(pixels, message):
    with pytest.raises(InputError, match=message):
        open_image(pixels)  # a single picture: it was clipped before
    with pytest.raises(InputError, match=message):
        standardize_images(pixels[None])


def test_reading_data_loads_no_model_hub_or_card_code():
    code = ("import sys, ad.data; loaded = [m for m in ('ad.models', 'huggingface_hub', 'ad.card', 'ad.checkpoint') "
            "if m in sys.modules]; assert not loaded, loaded; "
            "from ad import InputError, create_model, list_models, load_model; assert 'fcn' in list_models()")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
