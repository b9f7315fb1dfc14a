"""Ground-truth defect masks: one per test image, read from MVTec AD's ground_truth/ folder (or a zip
in its layout), and fitted to the model's square input as the images are."""

import contextlib
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ad.data.arrays import FITS, MAX_PIXELS, fit_square
from ad.data.images import IMAGE_SUFFIXES, safe_members
from ad.errors import InputError

MASK_SUFFIXES = ("", "_mask")  # <name>.png, and MVTec AD's <name>_mask.png


def find_masks_folder(images_path):
    """MVTec AD's ground_truth/ beside its test/ folder, or None where the layout is not MVTec's."""
    images_path = Path(images_path)
    masks = images_path.parent / "ground_truth"
    return masks if images_path.name == "test" and masks.is_dir() else None


def mask_paths(masks_folder, name):
    """Where the mask of the test image `name` ('crack/001.jpg') may lie, in the order looked for."""
    stem = Path(name).with_suffix("")
    return [Path(masks_folder) / f"{stem}{suffix}.png" for suffix in MASK_SUFFIXES]


def image_sizes(images_folder, names):
    """(height, width) of each image as ad.data reads it (EXIF rotation applied), from the file's
    header only: nothing is decoded."""
    sizes = []
    for name in names:
        path = Path(images_folder) / name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    width, height = image.size
                    if image.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that turn it 90 degrees
                        width, height = height, width
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise InputError(f"{path}: cannot read the image's size ({e})") from None
        sizes.append((height, width))
    return sizes


def load_masks(names, labels, masks_folder, sizes):
    """Boolean (H, W) masks, one per test image at its own size (`sizes`: (height, width) each).

    An anomalous image (label 1) needs a mask file (see mask_paths); a normal one (label 0) needs
    none and gets an empty mask (a file, if there is one, must mark nothing). A pixel is a defect
    when its value is above 127 (0/255 masks; resampled edges split at half way), or above 0 in a
    file whose values are only 0 and 1.
    """
    masks_folder = Path(masks_folder)
    if not masks_folder.is_dir():
        raise InputError(f"{masks_folder}: no such masks folder; expected one sub-folder per kind of "
                         "defect holding <name>.png or <name>_mask.png for each anomalous test image")
    _refuse_masks_without_images(masks_folder, names)
    masks = []
    for name, label, size in zip(names, labels, sizes, strict=True):
        found = next((p for p in mask_paths(masks_folder, name) if p.is_file()), None)
        if found is None and label == 1:
            expected = " or ".join(str(p) for p in mask_paths(masks_folder, name))
            raise InputError(f"{name}: an anomalous image without a mask; expected {expected}")
        mask = np.zeros(size, dtype=bool) if found is None else read_mask(found, size)
        if label == 0 and mask.any():
            raise InputError(f"{found}: marks {int(mask.sum())} defect pixels on {name}, which is "
                             "labelled normal; expected an empty mask (or none) for a normal image")
        masks.append(mask)
    return masks


def read_mask(path, size):
    """One mask file as a boolean (H, W) array, refused unless it is `size` (height, width)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                height, width = image.height, image.width
                if (height, width) == tuple(size) and height * width <= MAX_PIXELS:
                    values = np.asarray(image if image.mode in ("L", "I", "I;16", "F") else image.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{path}: not a readable mask image ({e}); expected a grey PNG, "
                         "255 (or 1) = defect, 0 = normal") from None
    if (height, width) != tuple(size):
        raise InputError(f"{path}: the mask is {width}x{height} but its image is {size[1]}x{size[0]} "
                         "(width x height); expected the same size")
    if height * width > MAX_PIXELS:
        raise InputError(f"{path}: {width}x{height} pixels is too large; at most "
                         f"{MAX_PIXELS // 1_000_000} million pixels are accepted")
    return values > (0 if values.max() <= 1 else 127)


def _refuse_masks_without_images(masks_folder, names):
    """Mask files that belong to no test image mean the images and masks are not the same set."""
    expected = {p for name in names for p in mask_paths(masks_folder, name)}
    files = sorted(p for p in masks_folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith(".") and p.is_file())
    orphans = [p for p in files if p not in expected]
    if orphans:
        shown = ", ".join(str(p.relative_to(masks_folder)) for p in orphans[:3])
        raise InputError(f"{masks_folder}: {len(orphans)} mask files match no test image ({shown}"
                         f"{', ...' if len(orphans) > 3 else ''}); expected <kind>/<name>.png or "
                         "<kind>/<name>_mask.png for a test image <kind>/<name>.<ext>")


def fit_mask(mask, size, fit):
    """A boolean (H, W) mask -> (size, size), brought onto the model's input as its image is."""
    if fit not in FITS:
        raise InputError(f"fit '{fit}': expected one of {', '.join(FITS)}")
    image = fit_square(Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255, "L"), size, fit,
                       Image.Resampling.BILINEAR)
    return np.asarray(image) > 127


@contextlib.contextmanager
def mvtec_test_folder(path):
    """A zip in MVTec AD's layout (test/<kind>/<name>, and ground_truth/<kind>/ when it has masks, at
    its top or inside one folder) unpacked into a private folder while it is read: its test/ folder,
    the masks beside it where find_masks_folder looks. Its train/ is left out. Any other file comes
    back as it is. Messages name the files as the zip names them, never the private folder."""
    prefix = _mvtec_prefix(path)
    if prefix is None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="ad-mvtec-") as scratch:
        try:
            _unpack(path, prefix, Path(scratch))
            yield Path(scratch, prefix, "test")
        except InputError as e:
            raise InputError(str(e).replace(scratch, Path(path).name)) from None


MVTEC_FOLDERS = ("test", "ground_truth")  # what a test set reads of an MVTec AD-style zip


def _mvtec_prefix(path):
    """'' or 'folder/': where a zip keeps MVTec AD's test/<kind>/ folders; None for any other file
    (load_zip then reads it, and says what is wrong with a bad one)."""
    if Path(path).suffix.lower() != ".zip":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = [m.filename.replace("\\", "/") for m in safe_members(archive, path)]
    except (zipfile.BadZipFile, OSError):
        return None

    def holds_test(prefix):
        return any(n.startswith(prefix + "test/") and n.count("/") >= prefix.count("/") + 2 for n in names)
    if holds_test(""):
        return ""
    folders = [top + "/" for top in sorted({n.split("/")[0] for n in names if "/" in n}) if holds_test(top + "/")]
    return folders[0] if len(folders) == 1 else None  # several test sets in one zip: read as any zip


def _unpack(path, prefix, folder):
    """The test images and masks of the zip (member paths already refused by safe_members when unsafe)."""
    with zipfile.ZipFile(path) as archive:
        for member in safe_members(archive, path):
            name = member.filename.replace("\\", "/")
            inside = name[len(prefix):].split("/")
            if (not name.startswith(prefix) or inside[0] not in MVTEC_FOLDERS or len(inside) < 2
                    or Path(name).suffix.lower() not in IMAGE_SUFFIXES or Path(name).name.startswith(".")):
                continue
            target = folder / name
            if not target.resolve().is_relative_to(folder.resolve()):
                raise InputError(f"{path}: member '{member.filename}' lies outside the zip; refused")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.write_bytes(archive.read(member))  # the declared size, then the CRC, checked
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
                raise InputError(f"{path}: member '{member.filename}' is corrupt ({e})") from None
