"""What visitors upload, read for the models: one image, a training set, a test set."""

import hashlib
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ad.data import CENTRE, IMAGE_SIZE, IMAGE_SUFFIXES, load_images, load_test_set, load_zip, open_image
from ad.data.masks import mvtec_test_folder
from ad.errors import InputError

MAX_TRAIN_IMAGES = 20_000  # a visitor's upload; larger sets train with train.py
_FORMAT_NAMES = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WebP"}
_FORMATS = sorted({_FORMAT_NAMES.get(suffix, suffix[1:].upper()) for suffix in IMAGE_SUFFIXES}, key=str.lower)
IMAGE_FORMATS = ", ".join(_FORMATS[:-1]) + " or " + _FORMATS[-1]  # "BMP, GIF, JPEG, PNG, TIFF or WebP"


def names_image_formats(function):
    """Fill `{formats}` in a callback's docstring (what agents read as the tool's description)."""
    function.__doc__ = function.__doc__.replace("{formats}", IMAGE_FORMATS)
    return function


@dataclass(frozen=True)
class Upload:
    """A dropped image, read once: the pixels the models read, a digest of its bytes, its own size."""

    image: np.ndarray  # uint8 (64, 64, 3): HW8's input format, what the shipped models read
    digest: str
    size: tuple  # (width, height) as uploaded
    data: bytes = b""
    name: str = "image"

    def pixels(self, model):
        """The picture read at the model's input format (a defect model reads it whole, at 128 px)."""
        if model.input_format == {"size": IMAGE_SIZE, "fit": CENTRE}:
            return self.image
        return open_image(self.data, name=self.name, **model.input_format)


def read_upload(path):
    if not path:
        raise InputError("no image yet: drop, upload or paste one first")
    name = Path(path).name
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{name}: cannot be read ({e.strerror})") from None
    image = open_image(data, name=name)  # refuses what is not an image, with a message
    with Image.open(io.BytesIO(data)) as original:  # the header only: open_image read it already
        size = original.size
    return Upload(image, hashlib.sha1(data).hexdigest(), size, data, name)


def painted_image(edited):
    """The painted image as a file in the drop zone, which detects it like any upload."""
    if edited is None or edited.get("composite") is None:
        raise InputError("nothing painted yet: open an image in the editor and paint on it")
    return save_picture(edited["composite"], "ad-painted-", "painted")


def save_picture(image, prefix, name):
    """A picture as a PNG in a folder of its own (per request: visitors never collide); its path."""
    path = Path(tempfile.mkdtemp(prefix=prefix)) / f"{name}.png"
    (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).convert("RGB").save(path)
    return str(path)


def training_images(files, size=IMAGE_SIZE, fit=CENTRE):
    """(images, skipped) of a training upload, read at the architecture's input format: one .npy,
    one .zip (an MVTec AD-style one gives its train/good alone), or any number of image files."""
    files = [Path(f) for f in (files or [])]
    if not files:
        raise InputError("no training images yet: upload a .zip of images, several image files or an .npy")
    skipped = []
    if len(files) == 1 and files[0].suffix.lower() in (".zip", ".npy"):
        images, _ = (load_zip(files[0], skipped, size, fit, normal_only=True) if files[0].suffix.lower() == ".zip"
                     else load_images(files[0], skipped, size, fit))
    else:
        if any(f.suffix.lower() not in IMAGE_SUFFIXES for f in files):
            raise InputError("upload one .zip or one .npy, or any number of image files, not a mix "
                             f"(got {', '.join(sorted({f.suffix or f.name for f in files}))})")
        with tempfile.TemporaryDirectory(prefix="ad-upload-") as scratch:  # gathered as one folder
            for i, f in enumerate(files):
                shutil.copy(f, Path(scratch) / f"{i:05d}-{f.name}")  # two uploads may share a name
            try:
                images, _ = load_images(Path(scratch), skipped, size, fit)
            except InputError:  # none could be read: say so of the files as the visitor named them
                name, reason = uploaded(*skipped[0])
                raise InputError(reason if len(files) == 1 else f"none of the {len(files):,} uploaded files "
                                 f"could be read as an image; the first, {reason}") from None
        skipped = [uploaded(name, reason) for name, reason in skipped]
    return images, skipped


def uploaded(name, reason):
    """A skipped file's (name, reason) as the visitor named it: not its copy's numbered name in a server folder."""
    name = name.split("-", 1)[1]  # "00003-cat.png"
    return name, f"{name}: {reason.split(name + ': ', 1)[-1]}"


def refuse_too_many(images):
    if len(images) > MAX_TRAIN_IMAGES:
        raise InputError(f"{len(images):,} images; the app trains on at most {MAX_TRAIN_IMAGES:,} "
                         "(train larger sets with train.py)")


def sample_files(folder):
    """The bundled sample test set's files, in HW8's layout: (images, labels, sources)."""
    if folder is None:
        raise InputError("this app has no bundled sample test set; upload one")
    return tuple(Path(folder) / name for name in ("testingset.npy", "testing_labels.npy", "testing_sources.npy"))


@dataclass
class SampleSummary:
    """What the bundled sample test set holds, as the tabs say it (read off its files, never typed in)."""

    images: int
    normal: int
    anomalies: dict  # source name -> count

    @property
    def text(self):
        kinds = ", ".join(f"{count} {name}" for name, count in self.anomalies.items())
        return f"{self.images} labelled images ({self.normal} normal faces, {kinds})"


def sample_summary(folder):
    """The bundled sample's SampleSummary from its labels and sources, or None when the app has none."""
    if folder is None:
        return None
    _, labels_file, sources_file = sample_files(folder)
    labels, sources = (np.load(path, allow_pickle=False) for path in (labels_file, sources_file))
    names, counts = np.unique(sources[labels == 1], return_counts=True)
    return SampleSummary(len(labels), int((labels == 0).sum()), {str(n): int(c) for n, c in zip(names, counts)})


def uploaded_test_sets(images_file, labels_file, sources_file, models):
    """name -> the test set as that model reads it (its input_format), read once per distinct format.
    A zip in MVTec AD's layout gives its test/ images, labelled by their sub-folders, with the defect
    masks of its ground_truth/ when it has them."""
    if not images_file:
        raise InputError("upload the test images: an .npy (labels optional, as .npy or .csv), or a .zip "
                         "(labelled by its sub-folders good/ and one per kind of anomaly, if it has them; "
                         "MVTec AD's test/ and ground_truth/ bring defect masks)")
    formats = {tuple(model.input_format.values()): model.input_format for model in models.values()}
    with mvtec_test_folder(images_file) as images:
        read = {key: load_test_set(images, labels_file, sources_file, require_labels=False, **input_format)
                for key, input_format in formats.items()}
    return {name: read[tuple(model.input_format.values())] for name, model in models.items()}


def sample_faces_file(folder):
    """The bundled sample set's normal faces as one .npy (a training set to try the Train tab with)."""
    images, labels, _ = sample_files(folder)
    faces = load_test_set(images, labels)
    path = Path(tempfile.mkdtemp(prefix="ad-sample-")) / "sample_faces.npy"
    np.save(path, np.asarray(faces.images[faces.labels == 0]))
    return str(path)
