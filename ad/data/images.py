"""Image files in: one file, bytes or picture, a folder (recursively) or a zip, read at an input format."""

import io
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ad.data.arrays import (CENTRE, IMAGE_SIZE, MAX_PIXELS, array_to_image, check_input_format, image_to_array,
                            load_array)
from ad.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_ZIP_MEMBERS = 50_000
MAX_ZIP_BYTES = 2 * 1024**3  # total unpacked size a zip may claim
MIN_TRAINING_IMAGES = 50  # fewer cannot show a model what normal looks like, nor calibrate it


def open_image(source, name=None, size=IMAGE_SIZE, fit=CENTRE):
    """A file path, bytes, PIL image or pixel array -> uint8 (size, size, 3), fitted as `fit` says."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "image")
    if isinstance(source, Image.Image):
        return image_to_array(source, name, size, fit)
    if isinstance(source, np.ndarray):
        return image_to_array(array_to_image(source, name), name, size, fit)
    check_input_format(size, fit)  # before reading a file that could not be used
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as e:
        raise InputError(f"{name}: cannot be read ({e.strerror})") from None
    if not data:
        raise InputError(f"{name}: the file is empty; expected a PNG, JPEG, WebP, BMP or GIF image")
    try:
        with warnings.catch_warnings():  # we refuse big images ourselves, with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise InputError(f"{name}: too large; at most {MAX_PIXELS // 1_000_000} million pixels "
                         "are accepted") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InputError(f"{name}: not an image this app can read; expected a PNG, JPEG, WebP, "
                         "BMP or GIF file") from None
    return image_to_array(image, name, size, fit)


def load_images(path, skipped=None, size=IMAGE_SIZE, fit=CENTRE):
    """Load a .npy array, an image file, a folder of images (recursively) or a .zip of images.

    Returns (images uint8 (N, size, size, 3), names): names identify images in CSVs (file names,
    or row indices for arrays), in file-name order. Given a list as `skipped`, files that cannot be
    read are left out and listed there as (name, reason); otherwise the first one stops the load.
    `size` and `fit` are the reading model's (`model.input_format`).
    """
    check_input_format(size, fit)
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return _read_all([(str(p.relative_to(path)), p.read_bytes) for p in files], path, skipped, size, fit)
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = load_array(path, size, fit)
        return array, [str(i) for i in range(len(array))]
    if suffix == ".zip":
        return load_zip(path, skipped, size, fit)
    if suffix in IMAGE_SUFFIXES:
        return open_image(path, size=size, fit=fit)[None], [path.name]
    raise InputError(f"{path}: unsupported file type '{suffix}'; expected .npy, .zip, an image "
                     "file or a folder of images")


def _read_all(items, path, skipped, size, fit):
    """items: (name, function returning the file's bytes), in order -> (images, names)."""
    images, names = [], []
    for name, read in tqdm(items, desc=f"reading {Path(path).name}", unit="image", leave=False,
                           disable=None if len(items) >= 1000 else True):
        try:
            images.append(open_image(read(), f"{Path(path).name}/{name}", size, fit))
            names.append(name)
        except (InputError, OSError) as e:
            if skipped is None:
                raise InputError(str(e)) from None
            skipped.append((name, str(e)))
    if not images:
        raise InputError(f"{path}: none of its {len(items)} images could be read; the first: "
                         f"{skipped[0][1]}")
    return np.stack(images), names


def load_normal_images(path, size=IMAGE_SIZE, fit=CENTRE):
    """The normal images to train on, as load_images reads them, with unreadable files skipped.

    Returns (images, skipped [(name, reason)]); refuses a set that training cannot learn from.
    """
    skipped, path = [], Path(path)
    if (path / MVTEC_NORMAL).is_dir():  # MVTec AD's layout: only train/good is normal
        path = path / MVTEC_NORMAL
    if path.suffix.lower() == ".zip":
        images, _ = load_zip(path, skipped, size, fit, normal_only=True)
    else:
        images, _ = load_images(path, skipped, size, fit)
    if len(images) < MIN_TRAINING_IMAGES:
        unread = f" ({len(skipped)} unreadable files skipped)" if skipped else ""
        raise InputError(f"{path}: {len(images)} images{unread}; training needs at least "
                         f"{MIN_TRAINING_IMAGES} normal images, and learns better from thousands")
    sample = images[np.linspace(0, len(images) - 1, min(len(images), 2000)).astype(int)]
    flat = sample.reshape(len(sample), -1)
    if (flat.min(axis=1) == flat.max(axis=1)).all():
        raise InputError(f"{path}: every image is a single flat colour; there is nothing to learn "
                         "from (expected photographs or drawings of the normal kind)")
    return images, skipped


MVTEC_NORMAL = Path("train", "good")  # where an MVTec AD-style folder or zip keeps its normal images


def load_zip(path, skipped=None, size=IMAGE_SIZE, fit=CENTRE, normal_only=False):
    """Read images straight out of a zip (nothing is extracted to disk), refusing unsafe archives.
    With `normal_only`, a zip in MVTec AD's layout gives its train/good images alone."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{path}: not a readable zip file ({e})") from None
    with archive:
        members = safe_members(archive, path)
        images = sorted((m for m in members if Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
                         and not Path(m.filename).name.startswith(".")), key=lambda m: m.filename)
        if not images:
            raise InputError(f"{path}: the zip holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        normal = [m for m in images if "/".join(MVTEC_NORMAL.parts) in "/".join(Path(m.filename).parts[:-1])]
        if normal_only and normal:
            images = normal
        return _read_all([(m.filename, lambda m=m: _read_member(archive, m, path)) for m in images],
                         path, skipped, size, fit)


def safe_members(archive, path):
    """The zip's files, refusing an archive too large to read or with a member outside it."""
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > MAX_ZIP_MEMBERS:
        raise InputError(f"{path}: {len(members)} files; at most {MAX_ZIP_MEMBERS} are accepted")
    total = sum(m.file_size for m in members)
    if total > MAX_ZIP_BYTES:
        raise InputError(f"{path}: unpacks to {_megabytes(total)}; at most "
                         f"{_megabytes(MAX_ZIP_BYTES)} is accepted")
    for m in members:
        parts = Path(m.filename.replace("\\", "/")).parts
        if m.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise InputError(f"{path}: member '{m.filename}' has an absolute or '..' path; refused")
    return members


def _megabytes(size):
    return f"{size / 1024**2:,.0f} MB"


def _read_member(archive, member, path):
    try:
        return archive.read(member)  # stops at the size the header declares, then checks the CRC
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as e:
        raise InputError(f"{path}: member '{member.filename}' is corrupt or not what its header "
                         f"declares ({e})") from None
