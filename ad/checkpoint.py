"""The checkpoint folder: the atomic save, its record and card, zips, Hub ids and resume state.

The models layer loads and writes the core (config.json and model.safetensors, strictly); this adds
the rest:

    config.json                  the architecture and its constructor arguments
    model.safetensors            the weights and the calibration (normal_score_quantiles)
    metrics.json                 ROC-AUC on a labelled test set, when training was given one
    training.json                the training arguments and the per-epoch history
    README.md                    the model card
    training_state.safetensors   only while a run is unfinished: what --resume reads

Nothing here is ever unpickled: weights and resume state are safetensors, the rest JSON.
"""

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ad import hub
from ad.card import model_card
from ad.errors import InputError
from ad.files import atomic_path, current_umask, write_json, write_text
from ad.models.registry import (CONFIG_FILE, WEIGHTS_FILE, list_models, load_folder, looks_like_a_path,
                                model_from_config, read_json)

METRICS_FILE = "metrics.json"
TRAINING_FILE = "training.json"
CARD_FILE = "README.md"
STATE_FILE = "training_state.safetensors"
HUB_FILES = [CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, TRAINING_FILE, CARD_FILE]


# ---------------------------------------------------------------- load


def load(source, device="cpu", revision=None, require_calibration=True):
    """A checkpoint folder, its zip (as `to_zip` writes it) or a Hub model id -> the model in eval
    mode, loaded strictly (ad.models.load_folder) or not at all.

    `model.metrics` and `model.training_record` carry metrics.json and training.json ({} when
    absent). An uncalibrated checkpoint is refused unless `require_calibration=False` (`python -m ad
    calibrate` mends such a checkpoint). A name meant as a path is never sent to the Hub.
    """
    folder = Path(source)
    if folder.is_file() and folder.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory() as unpacked:
            return load(_unzip(folder, Path(unpacked)), device, require_calibration=require_calibration)
    if not folder.is_dir():
        if looks_like_a_path(source):
            raise InputError(f"{source}: no such checkpoint folder (nor zip); a name like this is a "
                             "local path, so it is not looked up on the Hub")
        folder = hub.download(str(source), revision=revision, files=HUB_FILES)
    model = load_folder(folder, name=source, require_calibration=require_calibration)
    model.metrics = read_json(folder / METRICS_FILE)
    model.training_record = read_json(folder / TRAINING_FILE)
    return model.to(device).eval()


def find(folder):
    """{name: path} of the checkpoint folders inside `folder`, architectures in list_models() order."""
    folder = Path(folder)
    found = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")] \
        if folder.is_dir() else []
    names = list_models()
    found.sort(key=lambda p: (names.index(p.name) if p.name in names else len(names), p.name))
    return {p.name: p for p in found}


def to_zip(folder, path):
    """The checkpoint's files (not its resume state) in a zip, inside a folder of its name."""
    folder = Path(folder)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in HUB_FILES:
            if (folder / name).is_file():
                archive.write(folder / name, f"{folder.name}/{name}")
    return Path(path)


def _unzip(path, into):
    """The checkpoint files of a zip (at its top or in one folder) written into `into`; nothing else."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(m.filename).name: m for m in archive.infolist()
                       if Path(m.filename).name in HUB_FILES and len(Path(m.filename).parts) <= 2
                       and m.file_size < 200 * 1024**2}
            for name, member in members.items():
                (into / name).write_bytes(archive.read(member))
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable zip of a checkpoint ({e})") from None
    if not members:
        raise InputError(f"{path}: the zip holds no checkpoint files ({', '.join(HUB_FILES)})")
    return into


# ---------------------------------------------------------------- save


def save(model, folder, training=None, metrics=None, resume_state=None):
    """Write a checkpoint folder so that a kill at any moment leaves a loadable one.

    Every file is replaced atomically; a new folder is built aside and renamed into place. The
    resume state (weights, optimizer and epoch in one file, so never out of step) is written
    while a run is unfinished and removed when it ends (`resume_state=None`).
    """
    model.check_calibrated()
    folder = Path(folder)
    fresh = not folder.exists()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))  # same disk
    os.chmod(staging, 0o777 & ~current_umask())
    try:
        if resume_state is not None:
            _write_state(staging / STATE_FILE, model, **resume_state)
        model._save_pretrained(staging)  # the weights and config.json, as the Hub mixin writes them
        if training is not None:
            write_json(staging / TRAINING_FILE, training)
        if metrics is not None:
            write_json(staging / METRICS_FILE, metrics)
        write_text(staging / CARD_FILE, model_card(model, metrics, training))
        if fresh:
            os.replace(staging, folder)
            return
        for name in [STATE_FILE, *HUB_FILES]:  # the resume state first: it alone decides --resume
            if (staging / name).exists():
                os.replace(staging / name, folder / name)
        if resume_state is None:
            (folder / STATE_FILE).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare_output(folder, overwrite=False):
    """Refuse to train over an existing folder unless asked, and then only over a checkpoint."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise InputError(f"{folder}: folder exists and is not empty; pass --resume to continue "
                             "the run saved there or --overwrite to replace it")
        if not (folder / CONFIG_FILE).is_file():
            raise InputError(f"{folder}: --overwrite replaces checkpoint folders only, and this "
                             f"folder holds no {CONFIG_FILE}; choose another --out")
        shutil.rmtree(folder)


def remove_leftovers(folder):
    """Staging folders and temporary files that a killed run left beside or in `folder`."""
    folder = Path(folder)
    for stale in folder.parent.glob(f".{folder.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in folder.glob(".*.tmp") if folder.is_dir() else []:
        stale.unlink(missing_ok=True)


def read_training(folder):
    """training.json of a local folder ({} when there is none)."""
    return read_json(Path(folder) / TRAINING_FILE)


# ---------------------------------------------------------------- resume state


def _write_state(path, model, optimizer, train_config, history):
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    scalars = {}
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    metadata = {"config": json.dumps(model.config), "epoch": str(len(history)),
                "train_config": json.dumps(train_config), "history": json.dumps(history),
                "param_groups": json.dumps(optimizer_state["param_groups"]),
                "optimizer_scalars": json.dumps(scalars)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_resume_state(folder):
    """What --resume needs: {"model", "optimizer", "epoch", "history", "train_config"}."""
    folder = Path(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        if (folder / WEIGHTS_FILE).is_file():
            raise InputError(f"{folder}: this run already finished (no {STATE_FILE} left to resume "
                             "from); train into a new folder, or pass --overwrite to start again")
        raise InputError(f"{folder}: nothing to resume (no {STATE_FILE}); train without --resume first")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata()
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise InputError(f"{path}: resume state is unreadable ({e})") from None
    model = model_from_config(json.loads(metadata["config"]), path)
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
                          strict=True)
    optimizer = {"state": {}, "param_groups": json.loads(metadata["param_groups"])}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            optimizer["state"].setdefault(int(index), {})[key] = value
    for name, value in json.loads(metadata["optimizer_scalars"]).items():
        index, key = name.split(".", 1)
        optimizer["state"].setdefault(int(index), {})[key] = value
    return {"model": model, "optimizer": optimizer, "epoch": int(metadata["epoch"]),
            "history": json.loads(metadata["history"]),
            "train_config": json.loads(metadata["train_config"])}


# ---------------------------------------------------------------- the Hub


def push(folder, repo_id, private=False, revision=None, token=None):
    """Upload a checkpoint folder that loads (strictly) here; the folder is only read."""
    if not Path(folder).is_dir():
        raise InputError(f"{folder}: no such checkpoint folder")
    load(folder)  # never publish what would not load
    return hub.upload(folder, repo_id, files=HUB_FILES, private=private, revision=revision, token=token)
