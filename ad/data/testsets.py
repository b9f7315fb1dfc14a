"""Test sets: images with 0/1 labels (a file, or the folders they lie in), sources and their names."""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ad.data.arrays import CENTRE, IMAGE_SIZE
from ad.data.images import load_images
from ad.data.masks import find_masks_folder, fit_mask, image_sizes, load_masks
from ad.errors import InputError


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

    images: np.ndarray  # uint8 (N, S, S, 3), S the reading model's image_size
    labels: np.ndarray | None  # int64 (N,)
    sources: np.ndarray | None  # str (N,): the kind of each image, by name
    names: list
    masks: np.ndarray | None = None  # bool (N, S, S): each image's defect pixels, fitted as the image


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


def load_test_set(images, labels=None, sources=None, source_names=None, require_labels=True, size=IMAGE_SIZE,
                  fit=CENTRE, masks=None):
    """The one loader of test sets: images as load_images takes them, labels as load_labels,
    sources as load_sources (they override a `source` column of a labels CSV), `source_names` as
    parse_source_names takes them. Without a labels file, a folder or zip labels its images by the
    folder each lies in: good/ (or normal/) is normal, any other folder is an anomaly source of that
    name. With `require_labels=False`, a set with no labels is scored as it is (labels None). The
    images are read at `size` and `fit`, the scoring model's input_format. Defect masks are read
    from `masks` (see ad.data.masks), or by themselves from ground_truth/ beside an MVTec-style test/."""
    array, names = load_images(images, size=size, fit=fit)
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
                   names, _read_masks(images, names, label_values, masks, size, fit))


def _read_masks(images, names, labels, masks, size, fit):
    """The test set's masks fitted to the model's square, or None when it has none."""
    masks = masks or find_masks_folder(images)
    if masks is None:
        return None
    if not Path(str(images)).is_dir():
        raise InputError(f"{images}: masks are matched to image files by name; give the test images as a "
                         "folder (MVTec AD's test/<kind>/<name>), not an array or a zip")
    if labels is None:
        raise InputError(f"{images}: masks need the images' labels (0 = normal, 1 = anomaly)")
    found = load_masks(names, labels, masks, image_sizes(images, names))
    return np.stack([fit_mask(mask, size, fit) for mask in found])


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


def source_subsets(labels, sources=None):
    """{'overall': all images, '<source>': every normal image and that source's anomalies}."""
    labels = np.asarray(labels)
    subsets = {"overall": np.ones(len(labels), dtype=bool)}
    if sources is not None:
        sources, normal = np.asarray(sources), labels == 0
        for source in sorted(np.unique(sources[~normal]).tolist(), key=str):
            subsets[str(source)] = normal | ((sources == source) & ~normal)
    return subsets
