"""The training loop: one plain loop with held-out calibration, atomic checkpoints, resume and DDP."""

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ad.data import InputError, load_array, load_labels, load_sources
from ad.evaluation import auc_by_source
from ad.files import atomic_path, current_umask, write_json, write_text
from ad.hub import model_card
from ad.models import create_model
from ad.scoring import anomaly_scores

STATE_FILE = "training_state.safetensors"  # only while a run is unfinished: what --resume reads
TRAINING_FILE = "training.json"
METRICS_FILE = "metrics.json"


@dataclass
class TrainConfig:
    arch: str
    data: str
    out: str
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3  # AdamW peak; cosine-decayed to 1% over the run
    weight_decay: float = 1e-4
    warmup_steps: int = 100  # BatchNorm statistics settle before full steps
    crop: tuple | None = None  # (top, left, height, width); saved in the model config
    holdout: float = 0.05  # share of the normal images kept out of training to calibrate scores
    flip: bool = True  # faces are left-right symmetric: mirrored copies are normal too
    limit: int | None = None  # train on N images spread over the set only (quick runs, tests)
    seed: int = 0
    model: dict = field(default_factory=dict)  # architecture options: widths, latent_dim, ...
    test: str | None = None
    labels: str | None = None
    sources: str | None = None
    resume: bool = False
    overwrite: bool = False
    command: str | None = None  # the command line, recorded in the model card


class Objective(nn.Module):
    """Wraps a model so that DDP's forward hook sees the loss computation."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.loss(x)


def pick_device(local_rank=0):
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup_distributed():
    """(rank, world_size, local_rank); starts a process group when launched by torchrun."""
    if "RANK" not in os.environ:
        return 0, 1, 0
    rank, world, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # share the cores
    return rank, world, local_rank


def split_holdout(count, share, seed):
    """Deterministic (train indices, held-out indices); at least one image on each side."""
    order = np.random.default_rng(seed).permutation(count)
    held = min(max(1, round(count * share)), count - 1) if count > 1 else 0
    return np.sort(order[held:]), np.sort(order[:held])


def learning_rate(step, total_steps, cfg):
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train(cfg):
    """Train, calibrate and checkpoint one model; returns the trained model (on every rank)."""
    rank, world, local_rank = setup_distributed()
    try:
        return _train(cfg, rank, world, local_rank)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(cfg, rank, world, local_rank):
    device = pick_device(local_rank)
    out = Path(cfg.out)
    if rank == 0:
        _remove_leftovers(out)
    state = _read_state(out) if cfg.resume else None
    if state is not None:  # continue with the settings the run started with
        cfg = TrainConfig(**{**state["train_config"], "out": cfg.out, "resume": True, "overwrite": False})
    images = load_array(cfg.data)
    if cfg.limit and cfg.limit < len(images):  # spread out: HW8-style files may be sorted by pose
        images = images[np.linspace(0, len(images) - 1, cfg.limit).round().astype(int)]
    if len(images) < 2:
        raise InputError(f"{cfg.data}: {len(images)} image(s); training needs at least 2")
    train_idx, holdout_idx = split_holdout(len(images), cfg.holdout, cfg.seed)
    if cfg.test:
        test_set = _load_test_set(cfg)  # fail on bad test files now, not after hours of training

    if state is None:
        _check_out_folder(out, cfg)
        torch.manual_seed(cfg.seed)  # the initial weights
        model = create_model(cfg.arch, crop=cfg.crop, **cfg.model)
        start_epoch, history = 0, []
    else:
        model = create_model(state["config"].pop("architecture"), **state["config"])
        model.load_state_dict(state["model"], strict=True)
        start_epoch, history = state["epoch"], state["history"]
    model.to(device)
    objective = Objective(model)
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    autocast_dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() \
        else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and autocast_dtype == torch.float16)
    per_rank = len(train_idx) // world
    batch_size = min(cfg.batch_size, per_rank)
    steps_per_epoch = per_rank // batch_size  # drop the last partial batch: BatchNorm dislikes size 1
    total_steps = steps_per_epoch * cfg.epochs
    started = time.time() - (history[-1]["seconds"] if history else 0.0)

    for epoch in range(start_epoch, cfg.epochs):
        # Everything random is seeded by (seed, epoch, rank), so a resumed run repeats exactly.
        torch.manual_seed(cfg.seed * 100_003 + epoch * 101 + rank)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(train_idx)
        order = order[rank * per_rank:(rank + 1) * per_rank]
        model.train()
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}",
                   disable=None if rank == 0 else True,  # None: only on a terminal, not in logs
                   leave=False, unit="batch")
        running = 0.0
        for i in bar:
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, cfg)
            batch = np.sort(order[i * batch_size:(i + 1) * batch_size])  # sorted reads suit a memmap
            x = model.preprocess(images[batch])
            if cfg.flip:
                mirror = torch.rand(len(x), device=device) < 0.5
                x = torch.where(mirror[:, None, None, None], x.flip(3), x)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=device.type == "cuda"):
                loss = objective(x)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            running = 0.9 * running + 0.1 * loss.item() if i else loss.item()
            bar.set_postfix(loss=f"{running:.4f}")
        if rank == 0:
            held_out = images[holdout_idx]
            model.eval()
            with torch.inference_mode():
                held_out_loss = float(np.mean([
                    model.loss(model.preprocess(held_out[j:j + 256])).item()
                    for j in range(0, len(held_out), 256)]))
            model.calibrate(anomaly_scores(model, held_out))
            history.append({"epoch": epoch + 1, "train_loss": running, "held_out_loss": held_out_loss,
                            "seconds": round(time.time() - started, 1)})
            tqdm.write(f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}: train loss {running:.4f}, "
                       f"held-out loss {held_out_loss:.4f}")
            finished = epoch + 1 == cfg.epochs
            metrics = _evaluate(model, test_set) if finished and cfg.test else None
            save_checkpoint(model, out, cfg, history, metrics,
                            optimizer=None if finished else optimizer)
        if world > 1:
            dist.barrier()
    return model


def _load_test_set(cfg):
    if not cfg.labels:
        raise InputError("--test needs --labels (0 = normal, 1 = anomaly per test image)")
    images = load_array(cfg.test)
    labels, sources = load_labels(cfg.labels, [str(i) for i in range(len(images))])
    if cfg.sources:
        sources = load_sources(cfg.sources, len(images))
    return images, labels, sources


def _evaluate(model, test_set):
    images, labels, sources = test_set
    return {"roc_auc": auc_by_source(labels, anomaly_scores(model, images, desc="test set"), sources),
            "test_images": len(images)}


def _check_out_folder(out, cfg):
    if out.exists() and any(out.iterdir()):
        if not cfg.overwrite:
            raise InputError(f"{out}: folder exists and is not empty; pass --resume to continue the "
                             "run saved there or --overwrite to replace it")
        if not (out / "config.json").is_file():
            raise InputError(f"{out}: --overwrite replaces checkpoint folders only, and this folder "
                             "holds no config.json; choose another --out")
        shutil.rmtree(out)


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(model, out, cfg, history, metrics=None, optimizer=None):
    """Write the checkpoint folder so that a kill at any moment leaves a loadable one.

    Every file is replaced atomically. A new folder is built aside and renamed into place. The
    resume state holds weights, optimizer and epoch in one file, so it is never out of step.
    """
    out = Path(out)
    fresh = not out.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))  # same disk: renames
    os.chmod(staging, 0o777 & ~current_umask())
    try:
        if optimizer is not None:
            _write_state(staging / STATE_FILE, model, optimizer, cfg, history)
        model.save_pretrained(staging, config=model.config)  # model.safetensors, config.json
        training = {"config": _jsonable(asdict(cfg)), "history": history,
                    "epochs_done": len(history), "finished": optimizer is None}
        write_json(staging / TRAINING_FILE, training)
        if metrics is not None:
            write_json(staging / METRICS_FILE, metrics)
        write_text(staging / "README.md", model_card(model, metrics, training))
        for path in staging.iterdir():  # some writers make 0600 files; checkpoints are for sharing
            os.chmod(path, 0o666 & ~current_umask())
        if fresh:
            os.replace(staging, out)
            return
        # resume state first: it alone decides where --resume continues
        for name in [STATE_FILE, "model.safetensors", "config.json", TRAINING_FILE, METRICS_FILE,
                     "README.md"]:
            if (staging / name).exists():
                os.replace(staging / name, out / name)
        if optimizer is None:
            (out / STATE_FILE).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_leftovers(out):
    """Staging folders and temporary files that a killed run left beside or in `out`."""
    for stale in out.parent.glob(f".{out.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in out.glob(".*.tmp") if out.is_dir() else []:
        stale.unlink(missing_ok=True)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=list))


def _write_state(path, model, optimizer, cfg, history):
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    scalars = {}
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    metadata = {"config": json.dumps(model.config, default=list), "epoch": str(len(history)),
                "train_config": json.dumps(_jsonable(asdict(cfg))),
                "history": json.dumps(history), "param_groups": json.dumps(optimizer_state["param_groups"]),
                "optimizer_scalars": json.dumps(scalars)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _read_state(out):
    """What --resume needs, read from safetensors (never unpickled)."""
    path = out / STATE_FILE
    if not path.is_file():
        if (out / "model.safetensors").is_file():
            raise InputError(f"{out}: this run already finished (no {STATE_FILE} left to resume "
                             "from); train into a new folder, or pass --overwrite to start again")
        raise InputError(f"{out}: nothing to resume (no {STATE_FILE}); train without --resume first")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata()
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise InputError(f"{path}: resume state is unreadable ({e})") from None
    optimizer = {"state": {}, "param_groups": json.loads(metadata["param_groups"])}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            optimizer["state"].setdefault(int(index), {})[key] = value
    for name, value in json.loads(metadata["optimizer_scalars"]).items():
        index, key = name.split(".", 1)
        optimizer["state"].setdefault(int(index), {})[key] = value
    return {"config": json.loads(metadata["config"]), "epoch": int(metadata["epoch"]),
            "train_config": json.loads(metadata["train_config"]),
            "history": json.loads(metadata["history"]), "optimizer": optimizer,
            "model": {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}}

