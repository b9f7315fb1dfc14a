"""One registry of architectures (`create_model("cnn")`, `list_models()`) and the strict load of a folder."""

import json
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ad.errors import InputError

_MODELS = {}


def register_model(name, order):
    """Class decorator; `order` places the architecture in list_models() (the app's order too)."""
    def register(cls):
        if name in _MODELS and _MODELS[name] is not cls:
            warnings.warn(f"architecture '{name}' is registered twice: {cls.__module__}.{cls.__name__} "
                          f"replaces {_MODELS[name].__module__}.{_MODELS[name].__name__}", stacklevel=2)
        cls.architecture, cls.order = name, order
        _MODELS[name] = cls
        return cls
    return register


def list_models():
    return sorted(_MODELS, key=lambda name: (_MODELS[name].order, name))


def model_class(name):
    if name not in _MODELS:
        raise InputError(f"unknown architecture '{name}'; expected one of {', '.join(list_models())}")
    return _MODELS[name]


def create_model(name, **config):
    cls = model_class(name)
    try:
        model = cls(**config)
    except (TypeError, ValueError) as e:
        raise InputError(f"architecture '{name}': bad configuration ({e})") from None
    # channels-last convolutions ran a quarter faster here on CPU (oneDNN) and suit GPU tensor cores
    return model.to(memory_format=torch.channels_last)


# ---------------------------------------------------------------- the strict core load

CONFIG_FILE = "config.json"  # the architecture and its constructor arguments (the __init__ keywords)
# config.json's own format, written in it as "format" (absent: 1). A loader reads an older one as its
# checkpoint was trained (Detector.upgrade_options). 2: seg states its `padding` (in 1: zeros).
# 3: duo states its `patch` memory (in 1 and 2: none). 4: geo states its `memory_size` (before: none).
# 5: geo states its `surface` memory (before: none); duo's geo has a memory (before: none).
CONFIG_FORMAT = 5
WEIGHTS_FILE = "model.safetensors"  # the weights and the calibration (normal_score_quantiles)


# Buffers that checkpoints written before them lack: loaded as zeros (no pixel calibration; a patch
# memory's pixels read from 0, as they were), nothing else is.
ADDED_LATER = ("normal_peak_pixel_quantiles", "normal_distance")


def model_from_config(config, source):
    """The untrained model a config.json (or a resume state's copy of it, `source`) describes, in any format."""
    options = dict(config)
    name, written_in = options.pop("architecture"), options.pop("format", 1)
    if not isinstance(written_in, int) or not 1 <= written_in <= CONFIG_FORMAT:
        raise InputError(f"{source}: config format {written_in!r}; expected 1 to {CONFIG_FORMAT} (a newer "
                         "version of this project wrote it: update it to read this checkpoint)")
    return create_model(name, **model_class(name).upgrade_options(options, written_in))


def load_folder(folder, name=None, require_calibration=True):
    """config.json -> create_model -> load_state_dict(strict=True): a local folder's model, on the
    CPU in eval mode, or a clear refusal. `name` is what the user gave (a path, a zip, a Hub id).

    An uncalibrated model is refused unless asked: its scores could not be read as percentiles of
    normal images, and every verdict needs that.
    """
    folder, name = Path(folder), name or folder
    for file in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / file).is_file():
            raise InputError(f"{name}: checkpoint has no {file}; expected a folder with "
                             f"{CONFIG_FILE} and {WEIGHTS_FILE} (as written by train.py)")
    config = read_json(folder / CONFIG_FILE, required=True)
    if "architecture" not in config:
        raise InputError(f"{folder / CONFIG_FILE}: no 'architecture' key; expected one of "
                         f"{', '.join(list_models())}")
    model = model_from_config(config, folder / CONFIG_FILE)
    try:
        state = load_file(folder / WEIGHTS_FILE)
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{folder / WEIGHTS_FILE}: not a readable safetensors file ({e})") from None
    for key, value in model.state_dict().items():
        if key.endswith(ADDED_LATER) and key not in state:  # written before them
            state[key] = torch.zeros_like(value)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first_lines = "; ".join(str(e).splitlines()[:3])
        raise InputError(f"{name}: weights do not match the '{model.architecture}' configuration "
                         f"in {CONFIG_FILE} ({first_lines})") from None
    if require_calibration and not model.calibrated:
        raise InputError(f"{name}: checkpoint has no calibration (its normal_score_quantiles are "
                         "empty), so its scores cannot be read against normal images; calibrate it "
                         "on normal images with `python -m ad calibrate --checkpoint FOLDER --images "
                         "NORMAL_IMAGES`")
    return model.eval()


def read_json(path, required=False):
    """A JSON object from a checkpoint folder; a missing optional file is {}, a damaged one is refused."""
    path = Path(path)
    if not path.is_file() and not required:
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}); the checkpoint is damaged") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def looks_like_a_path(name):
    """True when `name` is meant as a local path, never a Hub id: it starts with '.', '/' or '~', ends
    with .zip, or its first part is a folder here (`checkpoints/fnc` is a typo, not a Hub repo)."""
    name = str(name)
    first = Path(name).parts[0] if Path(name).parts else ""
    return (name.startswith((".", "/", "~", "\\")) or name.lower().endswith(".zip")
            or bool(first) and Path(first).is_dir())
