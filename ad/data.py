"""Data in: HW8 arrays, image files, folders and zips, labels and sources; validation and preprocessing."""

import csv
import functools
import io
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from ad.errors import InputError

IMAGE_SIZE = 64  # HW8's images are 64x64 RGB; models read this size unless they set input_size
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000  # larger pictures are refused before decoding (decompression bombs)
MAX_ZIP_MEMBERS = 50_000
MAX_ZIP_BYTES = 2 * 1024**3  # total unpacked size a zip may claim


# ---------------------------------------------------------------- arrays


ARRAY_LAYOUTS = "(N, 64, 64, 3) as HW8, or any (N, H, W) grey, (N, H, W, C) or (N, C, H, W), C = 1, 3 or 4"


def load_array(path):
    """Load an .npy of images, never unpickled. HW8's layout stays memory-mapped (the real training
    set is 1.2 GB); any other layout is converted image by image as image files are."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; expected an .npy array of images, {ARRAY_LAYOUTS}")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise InputError(f"{path}: not an .npy file; expected an array saved with numpy.save, "
                             f"{ARRAY_LAYOUTS}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "object" in str(e).lower():
            raise InputError(f"{path}: holds Python objects (pickle), which are refused (images of "
                             "mixed sizes saved as one array are such objects); expected a plain "
                             f"numeric array, {ARRAY_LAYOUTS}, or a folder of image files") from None
        raise InputError(f"{path}: not a readable .npy file ({e}); it may be truncated") from None
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy file ({e})") from None
    return standardize_images(array, name=str(path))


def standardize_images(array, name="images"):
    """Any stack of images -> uint8 (N, 64, 64, 3), each converted as an image file would be
    (RGB, centre square, 64x64). HW8's own layout passes through untouched (memory-mapped)."""
    array = np.asarray(array) if not isinstance(array, np.ndarray) else array
    if array.shape == IMAGE_SHAPE or array.ndim == 4 and array.shape[1:] in (IMAGE_SHAPE, (3, 64, 64)):
        return validate_images(array, name)
    if array.ndim == 3:  # (N, H, W): grey
        array = array[..., None]
    elif array.ndim == 4 and array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):
        array = array.transpose(0, 2, 3, 1)  # channels first
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4) or min(array.shape[1:3]) < 1:
        raise InputError(f"{name}: shape {tuple(array.shape)}; expected images, {ARRAY_LAYOUTS}")
    if len(array) == 0:
        raise InputError(f"{name}: holds no images; expected N >= 1")
    pixels = _as_uint8(array, name)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[-1]]
    images = tqdm(pixels, desc=f"converting {Path(name).name}", unit="image", leave=False,
                  disable=None if len(pixels) >= 1000 else True)
    return np.stack([image_to_array(Image.fromarray(p[..., 0] if mode == "L" else p, mode), name)
                     for p in images])


def validate_images(array, name="images"):
    """Check shape and dtype and bring the array to uint8 (N, 64, 64, 3), explaining any refusal."""
    array = np.asarray(array) if not isinstance(array, np.ndarray) else array
    if array.ndim == 3 and array.shape == IMAGE_SHAPE:
        array = array[None]
    if array.ndim == 4 and array.shape[1:] == (3, IMAGE_SIZE, IMAGE_SIZE):
        array = array.transpose(0, 2, 3, 1)  # channels-first is unambiguous, so accept it
    if array.ndim != 4 or array.shape[1:] != IMAGE_SHAPE:
        raise InputError(f"{name}: shape {tuple(array.shape)}; expected (N, 64, 64, 3) "
                         "images (HW8 layout), N >= 1")
    if len(array) == 0:
        raise InputError(f"{name}: holds no images; expected (N, 64, 64, 3) with N >= 1")
    return _as_uint8(array, name)


def _as_uint8(array, name):
    """Pixel values as uint8: floats in [0, 1] or [0, 255] are scaled, integers must be 0..255."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        values = np.asarray(array, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InputError(f"{name}: contains NaN or Inf; expected finite pixel values")
        low, high = values.min(), values.max()
        if low >= 0 and high <= 1:
            values = values * 255
        elif low < 0 or high > 255:
            raise InputError(f"{name}: float values span [{low:g}, {high:g}]; accepted float "
                             "ranges are [0, 1] and [0, 255] (or give uint8)")
        return np.rint(values).astype(np.uint8)
    if array.dtype.kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InputError(f"{name}: integer values span [{low}, {high}]; expected 0..255")
        return array.astype(np.uint8)
    raise InputError(f"{name}: dtype {array.dtype}; expected uint8 (or floats in [0, 1] or [0, 255])")


# ---------------------------------------------------------------- images


def open_image(source, name=None):
    """Open a file path, bytes or PIL image and return it as a 64x64x3 uint8 array."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "image")
    if isinstance(source, Image.Image):
        return image_to_array(source, name)
    if isinstance(source, np.ndarray):
        return image_to_array(Image.fromarray(_to_uint8(source)), name)
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
    return image_to_array(image, name)


def image_to_array(image, name="image"):
    """EXIF rotation, RGB (transparency onto white), centre square crop, resize to 64x64."""
    if image.width * image.height > MAX_PIXELS:
        raise InputError(f"{name}: {image.width}x{image.height} pixels is too large; "
                         f"at most {MAX_PIXELS // 1_000_000} million pixels are accepted")
    try:
        image.seek(0)  # first frame of an animation
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: the image data is corrupt or truncated ({e})") from None
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).copy()


def _to_rgb(image):
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit grey: scale, don't clip
        values = np.asarray(image, dtype=np.float64)
        scale = 255 / 65535 if values.max() > 255 else 1.0
        image = Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_uint8(array):
    if array.dtype == np.uint8:
        return array
    array = np.asarray(array, dtype=np.float64)
    return np.clip(array * 255 if array.max() <= 1 else array, 0, 255).astype(np.uint8)


def load_images(path, skipped=None):
    """Load a .npy array, an image file, a folder of images (recursively) or a .zip of images.

    Returns (images uint8 (N, 64, 64, 3), names): names identify images in CSVs (file names, or
    row indices for arrays), in file-name order. Given a list as `skipped`, files that cannot be
    read are left out and listed there as (name, reason); otherwise the first one stops the load.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return _read_all([(str(p.relative_to(path)), p.read_bytes) for p in files], path, skipped)
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = load_array(path)
        return array, [str(i) for i in range(len(array))]
    if suffix == ".zip":
        return load_zip(path, skipped)
    if suffix in IMAGE_SUFFIXES:
        return open_image(path)[None], [path.name]
    raise InputError(f"{path}: unsupported file type '{suffix}'; expected .npy, .zip, an image "
                     "file or a folder of images")


def _read_all(items, path, skipped):
    """items: (name, function returning the file's bytes), in order -> (images, names)."""
    images, names = [], []
    for name, read in tqdm(items, desc=f"reading {Path(path).name}", unit="image", leave=False,
                           disable=None if len(items) >= 1000 else True):
        try:
            images.append(open_image(read(), name=f"{Path(path).name}/{name}"))
            names.append(name)
        except (InputError, OSError) as e:
            if skipped is None:
                raise InputError(str(e)) from None
            skipped.append((name, str(e)))
    if not images:
        raise InputError(f"{path}: none of its {len(items)} images could be read; the first: "
                         f"{skipped[0][1]}")
    return np.stack(images), names


MIN_TRAINING_IMAGES = 50  # fewer cannot show a model what normal looks like, nor calibrate it


def load_normal_images(path):
    """The normal images to train on, as load_images reads them, with unreadable files skipped.

    Returns (images, skipped [(name, reason)]); refuses a set that training cannot learn from.
    """
    skipped = []
    images, _ = load_images(path, skipped)
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


def load_zip(path, skipped=None):
    """Read images straight out of a zip (nothing is extracted to disk), refusing unsafe archives."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{path}: not a readable zip file ({e})") from None
    with archive:
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
        images = sorted((m for m in members if Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
                         and not Path(m.filename).name.startswith(".")), key=lambda m: m.filename)
        if not images:
            raise InputError(f"{path}: the zip holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return _read_all([(m.filename, lambda m=m: _read_member(archive, m, path)) for m in images],
                         path, skipped)


def _megabytes(size):
    return f"{size / 1024**2:,.0f} MB"


def _read_member(archive, member, path):
    try:
        return archive.read(member)  # stops at the size the header declares, then checks the CRC
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as e:
        raise InputError(f"{path}: member '{member.filename}' is corrupt or not what its header "
                         f"declares ({e})") from None


# ---------------------------------------------------------------- labels and sources


def load_labels(path, names):
    """Read 0/1 labels (1 = anomaly) for the images called `names`, from an .npy or a CSV.

    A CSV needs a `label` column; rows are matched to images by a `filename` column, else by an
    `id` column (row index, as in HW8's submission), else by order. An optional `source` column
    gives per-source groups. Returns (labels int64 (N,), sources or None).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such labels file; expected .npy or .csv")
    sources = None
    if path.suffix.lower() == ".npy":
        labels = _load_vector(path, "labels")
    elif path.suffix.lower() == ".csv":
        labels, sources = _read_labels_csv(path, names)
    else:
        raise InputError(f"{path}: labels must be a .npy or a .csv file, not '{path.suffix}'")
    labels = check_labels(labels, len(names), str(path))
    return labels, sources


def check_labels(labels, count, name="labels"):
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != count:
        raise InputError(f"{name}: {labels.shape[0] if labels.ndim else 0} labels for {count} images; "
                         "expected one label per image, in the images' order")
    if labels.dtype.kind not in "biuf" or not np.isin(labels, [0, 1]).all():
        raise InputError(f"{name}: labels must be 0 (normal) or 1 (anomaly); found "
                         f"{sorted(set(np.unique(labels).tolist()) - {0, 1})[:5]}")
    return labels.astype(np.int64)


def labels_from_folders(names, where):
    """(labels, sources) from the folder each image lies in: good/ or normal/ -> 0, others -> 1."""
    folders = [Path(name).parent.name for name in names]
    if "" in folders:
        raise InputError(f"{where}: '{names[folders.index('')]}' lies outside any sub-folder; without "
                         f"a labels file, expected sub-folders {' or '.join(NORMAL_FOLDERS)}/ for normal "
                         "images and one sub-folder per kind of anomaly (MVTec AD's test/ layout)")
    labels = np.array([0 if f.lower() in NORMAL_FOLDERS else 1 for f in folders], dtype=np.int64)
    return labels, np.array(folders)


def check_two_classes(labels, what="labels"):
    if len(np.unique(labels)) < 2:
        raise InputError(f"{what}: every image has label {int(labels[0])}; ROC-AUC needs both normal "
                         "(0) and anomalous (1) images")


def load_sources(path, count):
    """Per-image source ids (ints or strings) from an .npy or a one-column CSV."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r]
        if rows and rows[0][0].strip().lower() == "source":
            rows = rows[1:]
        sources = np.array([r[-1].strip() for r in rows])
    else:
        sources = _load_vector(path, "sources")
    if sources.ndim != 1 or len(sources) != count:
        raise InputError(f"{path}: {len(sources)} sources for {count} images; expected one per image")
    return sources


@dataclass
class TestSet:
    """Images with their 0/1 labels (1 = anomaly) or None when unknown, per-image source names (or
    None) and file names."""

    images: np.ndarray  # uint8 (N, 64, 64, 3)
    labels: np.ndarray | None  # int64 (N,)
    sources: np.ndarray | None  # str (N,): the kind of each image, by name
    names: list


NORMAL_FOLDERS = ("good", "normal")  # MVTec AD's test/good; every other folder is a kind of anomaly


def parse_source_names(text):
    """'1=UTKFace,2=CIFAR-10' -> {'1': 'UTKFace', '2': 'CIFAR-10'}: names for numeric source ids."""
    if not text:
        return {}
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    pairs = [part.partition("=") for part in text.split(",") if part.strip()]
    if any(not sep or not key.strip() or not name.strip() for key, sep, name in pairs):
        raise InputError(f"source names '{text}': expected ID=NAME pairs separated by commas, "
                         "e.g. 1=UTKFace,2=CIFAR-10")
    return {key.strip(): name.strip() for key, _, name in pairs}


def name_sources(sources, names=None):
    """Sources as names: given names first, strings as they are, a bare number as 'source N'."""
    names = parse_source_names(names)

    def name(value):
        key = str(value.item() if hasattr(value, "item") else value).strip()
        if key in names:
            return names[key]
        try:
            return f"source {int(float(key))}"
        except ValueError:
            return key
    return np.array([name(v) for v in np.asarray(sources).tolist()], dtype=str)


def labels_itself(names):
    """True when every image lies in a sub-folder, one of them good/ (or normal/) and another one not:
    the folders are labels. Otherwise (cats/, dogs/) they are not, and an unlabelled set is scored as it is."""
    folders = {Path(name).parent.name.lower() for name in names}
    return "" not in folders and bool(folders & set(NORMAL_FOLDERS)) and bool(folders - set(NORMAL_FOLDERS))


def load_test_set(images, labels=None, sources=None, source_names=None, require_labels=True):
    """The one loader of test sets: images as load_images takes them, labels as load_labels,
    sources as load_sources (they override a `source` column of a labels CSV), `source_names` as
    parse_source_names takes them. Without a labels file, a folder or zip labels its images by the
    folder each lies in: good/ (or normal/) is normal, any other folder is an anomaly source of that
    name. With `require_labels=False`, a set with no labels is scored as it is (labels None)."""
    array, names = load_images(images)
    is_collection = Path(str(images)).is_dir() or str(images).lower().endswith(".zip")
    source_values = None
    if labels:
        label_values, source_values = load_labels(labels, names)
    elif is_collection and (require_labels or labels_itself(names)):
        label_values, source_values = labels_from_folders(names, images)
    elif require_labels:
        raise InputError(f"{images}: a test set needs labels (0 = normal, 1 = anomaly per image), "
                         "as .npy or .csv, or images in sub-folders good/ and one per kind of anomaly")
    else:
        label_values = None
    if sources:
        source_values = load_sources(sources, len(array))
    if label_values is not None:
        check_two_classes(label_values, Path(str(labels)).name if labels else f"{images}'s sub-folders")
    return TestSet(array, label_values, None if source_values is None else name_sources(source_values, source_names),
                   names)


def _load_vector(path, what):
    try:
        vector = np.load(path, allow_pickle=False)
    except ValueError:
        raise InputError(f"{path}: not a plain .npy array of {what} (pickled or corrupt files are "
                         "refused)") from None
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy file ({e})") from None
    return np.asarray(vector).reshape(-1) if np.ndim(vector) == 2 and 1 in np.shape(vector) else vector


def _read_labels_csv(path, names):
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        rows = list(reader)
    if "label" not in columns:
        raise InputError(f"{path}: no 'label' column (found {list(columns) or 'none'}); expected a "
                         "header with 'label' and optionally 'filename' or 'id', and 'source'")
    try:
        values = [int(float(r[columns["label"]])) for r in rows]
    except (TypeError, ValueError):
        raise InputError(f"{path}: a 'label' value is missing or not a number; expected 0 or 1") from None
    source_values = [r[columns["source"]] for r in rows] if "source" in columns else None
    key = next((k for k in ("filename", "file", "name", "id") if k in columns), None)
    if key is None:
        order = list(range(len(rows)))
    else:
        keys = [r[columns[key]] for r in rows]
        wanted = names if key != "id" else [str(i) for i in range(len(names))]
        position = {k: i for i, k in enumerate(keys)}
        missing = [w for w in wanted if w not in position]
        if missing or len(rows) != len(names):
            raise InputError(f"{path}: {len(rows)} rows for {len(names)} images; images without a "
                             f"row: {missing[:3]}")
        order = [position[w] for w in wanted]
    if len(order) != len(names):
        raise InputError(f"{path}: {len(rows)} labels for {len(names)} images; expected one per image")
    labels = np.array([values[i] for i in order])
    sources = None if source_values is None else np.array([source_values[i].strip() for i in order])
    return labels, sources


# ---------------------------------------------------------------- preprocessing


def parse_crop(text):
    """'T,L,H,W' on the 64x64 image -> (top, left, height, width), checked to lie inside it."""
    if text is None or text == "" or text == []:
        return None
    try:
        crop = tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise InputError(f"crop '{text}': expected four integers TOP,LEFT,HEIGHT,WIDTH") from None
    if len(crop) != 4:
        raise InputError(f"crop '{text}': expected four integers TOP,LEFT,HEIGHT,WIDTH")
    top, left, height, width = crop
    if top < 0 or left < 0 or height < 4 or width < 4 or top + height > IMAGE_SIZE \
            or left + width > IMAGE_SIZE:
        raise InputError(f"crop {crop}: the box must lie inside the 64x64 image and be at least 4x4")
    return crop


def preprocess(images, crop=None, size=IMAGE_SIZE, device="cpu"):
    """uint8 (B, 64, 64, 3) -> float (B, 3, size, size) in [-1, 1]: cropped, then resized to size.

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

