"""Pixels in: the input format (side and fit), one uint8 rule, one picture made square, .npy arrays."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from ad.errors import InputError

IMAGE_SIZE = 64  # HW8's images are 64x64 RGB: the side read unless a model says otherwise
CENTRE, WHOLE = "centre", "whole"
FITS = {CENTRE: "its centre square, resized", WHOLE: "the whole picture, resized (aspect ratio not kept)"}
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 512
MAX_PIXELS = 40_000_000  # larger pictures are refused before decoding (decompression bombs)
ARRAY_LAYOUTS = "(N, 64, 64, 3) as HW8, or any (N, H, W) grey, (N, H, W, C) or (N, C, H, W), C = 1, 3 or 4"


def check_input_format(size, fit):
    """The square side a picture is read at and how it is fitted to it; refused when neither makes sense."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise InputError(f"image_size {size!r}: expected a whole number of pixels from {MIN_IMAGE_SIZE} "
                         f"to {MAX_IMAGE_SIZE}")
    if fit not in FITS:
        raise InputError(f"fit {fit!r}: expected one of {', '.join(FITS)} ("
                         + "; ".join(f"{name}: {how}" for name, how in FITS.items()) + ")")
    return size, fit


def as_uint8(array, name="images"):
    """The one rule for pixel values: uint8 as it is; integers must be 0..255; floats in [0, 1] are
    scaled by 255 and floats in [0, 255] taken as they are. Anything else is refused, not clipped."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        values = np.asarray(array, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InputError(f"{name}: contains NaN or Inf; expected finite pixel values")
        low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
        if low >= 0 and high <= 1:
            values = values * 255
        elif low < 0 or high > 255:
            raise InputError(f"{name}: float values span [{low:g}, {high:g}]; accepted float "
                             "ranges are [0, 1] and [0, 255] (or give uint8)")
        return np.rint(values).astype(np.uint8)
    if array.dtype.kind in "iu":
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 255:
            raise InputError(f"{name}: integer values span [{low}, {high}]; expected 0..255")
        return array.astype(np.uint8)
    raise InputError(f"{name}: dtype {array.dtype}; expected uint8 (or floats in [0, 1] or [0, 255])")


def image_to_array(image, name="image", size=IMAGE_SIZE, fit=CENTRE):
    """EXIF rotation, RGB (transparency onto white), fitted to the square (see FITS), size x size."""
    check_input_format(size, fit)
    if image.width * image.height > MAX_PIXELS:
        raise InputError(f"{name}: {image.width}x{image.height} pixels is too large; "
                         f"at most {MAX_PIXELS // 1_000_000} million pixels are accepted")
    try:
        image.seek(0)  # first frame of an animation
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: the image data is corrupt or truncated ({e})") from None
    return np.asarray(fit_square(image, size, fit), dtype=np.uint8).copy()


def fit_square(image, size, fit, resample=Image.Resampling.BICUBIC):
    """A PIL picture onto the size x size square as FITS says: pictures and their masks both go
    through here, so a mask always lies where its picture's pixels went."""
    if fit == CENTRE:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image.resize((size, size), resample)  # a picture already that size is copied


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


def array_to_image(pixels, name="image"):
    """One (H, W), (H, W, C) or (C, H, W) array (C = 1, 3 or 4) as a PIL image, its values by as_uint8."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] not in (1, 3, 4) and pixels.shape[0] in (1, 3, 4):
        pixels = pixels.transpose(1, 2, 0)  # channels first
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or pixels.ndim == 3 and pixels.shape[-1] in (3, 4)) or 0 in pixels.shape:
        raise InputError(f"{name}: shape {pixels.shape}; expected one image, (H, W) grey or (H, W, C), C = 1, 3 or 4")
    pixels = as_uint8(pixels, name)
    return Image.fromarray(pixels, {2: "L"}.get(pixels.ndim) or {3: "RGB", 4: "RGBA"}[pixels.shape[-1]])


def load_array(path, size=IMAGE_SIZE, fit=CENTRE):
    """Load an .npy of images, never unpickled. Images already size x size stay memory-mapped (HW8's
    training set is 1.2 GB); any other layout is converted image by image as image files are."""
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
    return standardize_images(array, name=str(path), size=size, fit=fit)


def standardize_images(array, name="images", size=IMAGE_SIZE, fit=CENTRE):
    """Any stack of images -> uint8 (N, size, size, 3), each converted as an image file would be
    (RGB, fitted, resized). Images already that size pass through untouched (a memmap stays one)."""
    check_input_format(size, fit)
    array = np.asarray(array) if not isinstance(array, np.ndarray) else array
    square = (size, size, 3)
    if array.shape == square or array.ndim == 4 and array.shape[1:] in (square, (3, size, size)):
        return validate_images(array, name, size)
    if array.ndim == 3:  # (N, H, W): grey
        array = array[..., None]
    elif array.ndim == 4 and array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):
        array = array.transpose(0, 2, 3, 1)  # channels first
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4) or min(array.shape[1:3]) < 1:
        raise InputError(f"{name}: shape {tuple(array.shape)}; expected images, {ARRAY_LAYOUTS}")
    if len(array) == 0:
        raise InputError(f"{name}: holds no images; expected N >= 1")
    pixels = as_uint8(array, name)
    images = tqdm(pixels, desc=f"converting {Path(name).name}", unit="image", leave=False,
                  disable=None if len(pixels) >= 1000 else True)
    return np.stack([image_to_array(array_to_image(p, name), name, size, fit) for p in images])


def validate_images(array, name="images", size=IMAGE_SIZE):
    """Check shape and dtype and bring the array to uint8 (N, size, size, 3), explaining any refusal."""
    array = np.asarray(array) if not isinstance(array, np.ndarray) else array
    square = (size, size, 3)
    if array.ndim == 3 and array.shape == square:
        array = array[None]
    if array.ndim == 4 and array.shape[1:] == (3, size, size):
        array = array.transpose(0, 2, 3, 1)  # channels-first is unambiguous, so accept it
    if array.ndim != 4 or array.shape[1:] != square:
        hint = "" if size == IMAGE_SIZE else (f"; read pictures of other sizes with load_images(path, "
                                              f"size={size}, fit=...) (the model's input_format)")
        raise InputError(f"{name}: shape {tuple(array.shape)}; expected (N, {size}, {size}, 3) images"
                         f"{' (HW8 layout)' if size == IMAGE_SIZE else ''}, N >= 1{hint}")
    if len(array) == 0:
        raise InputError(f"{name}: holds no images; expected (N, {size}, {size}, 3) with N >= 1")
    return as_uint8(array, name)
