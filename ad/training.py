"""The training loop: one plain loop with held-out calibration, atomic checkpoints, resume and DDP."""

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.auto import tqdm

from ad import checkpoint
from ad.data import CENTRE, IMAGE_SIZE, MIN_TRAINING_IMAGES, load_normal_images, load_test_set
from ad.device import pick_device
from ad.errors import InputError
from ad.evaluation import metrics_by_source
from ad.models import create_model
from ad.scoring import anomaly_scores


MIN_EPOCHS, MIN_STEPS, MAX_EPOCHS = 3, 100, 50  # what `epochs=None` means


@dataclass
class TrainConfig:
    """Every training option, stated once: train.py's flags and their defaults are read from here."""

    arch: str = "geo"  # the recommended general detector (README: "Any kind of normal image")
    data: str | None = None  # the normal images: .npy, a folder or a .zip; required unless resuming
    out: str | None = None  # the checkpoint folder to write
    epochs: int | None = None  # None: 3 passes, more (up to 50) for small sets: at least 100 steps
    # (the recommended detector learns its views in ~100 steps; more passes overfit the normal images)
    batch_size: int = 128  # fits a CPU's caches; per process under torchrun
    lr: float = 2e-3  # AdamW peak; cosine-decayed to 1% over the run
    weight_decay: float = 1e-4  # light: the small latents already regularise
    warmup_steps: int = 100  # BatchNorm statistics settle before full steps
    crop: tuple | None = None  # (top, left, height, width) read by the model; saved in its config
    image_size: int = IMAGE_SIZE  # side of the square every picture is read at (HW8's 64); saved in its config
    fit: str = CENTRE  # how a picture becomes that square: "centre" square or "whole" (ad.data.FITS)
    holdout: float = 0.05  # share of the normal images kept out of training to calibrate scores
    flip: bool = True  # mirrored normal images are normal too (faces, most objects)
    limit: int | None = None  # train on N images spread over the set only (quick runs, tests)
    seed: int = 0  # weights, order and augmentation all follow it: runs repeat exactly
    model: dict = field(default_factory=dict)  # architecture options: widths, latent_dim, ...
    test: str | None = None  # a labelled test set, evaluated after the last epoch
    labels: str | None = None  # its 0/1 labels
    sources: str | None = None  # its per-image sources, for metrics per kind of anomaly
    source_names: str | None = None  # names of numeric source ids: "1=UTKFace,2=CIFAR-10"
    resume: bool = False  # continue the unfinished run in `out`, with its own settings
    overwrite: bool = False  # replace the checkpoint in `out`
    command: str | None = None  # the command line, recorded in the model card


class Objective(nn.Module):
    """Wraps a model so that DDP's forward hook sees the loss computation."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.loss(x)


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


def default_epochs(steps_per_epoch):
    """What `epochs=None` means: 3 passes, more for small sets so that there are 100 steps (but
    at most 50 passes: each ends with calibration and a checkpoint)."""
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_STEPS / max(1, steps_per_epoch))))


def learning_rate(step, total_steps, cfg):
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train(cfg, on_epoch=None):
    """Train, calibrate and checkpoint one model; returns the trained model (on every rank).

    `on_epoch(record)`, when given, is called after each epoch's checkpoint is written, with
    {"epoch", "epochs", "train_loss", "held_out_loss", "seconds"}; if it returns True, training
    stops there, and the folder holds that epoch's calibrated model (the app's Stop button).
    """
    rank, world, local_rank = setup_distributed()
    try:
        return _train(cfg, rank, world, local_rank, on_epoch)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(cfg, rank, world, local_rank, on_epoch=None):
    device = pick_device(local_rank)
    if not cfg.out or not (cfg.resume or cfg.data):
        raise InputError("training needs the normal images (--data) and a folder to write (--out); "
                         "--resume needs only --out")
    if rank == 0:
        checkpoint.remove_leftovers(cfg.out)
    state = checkpoint.read_resume_state(cfg.out) if cfg.resume else None
    if state is not None:  # continue with the settings the run started with
        cfg = TrainConfig(**{**state["train_config"], "out": cfg.out, "resume": True, "overwrite": False})
    images, skipped = load_normal_images(cfg.data, cfg.image_size, cfg.fit)  # the model's input format
    if skipped and rank == 0:
        tqdm.write(f"skipped {len(skipped)} unreadable file(s) of {len(images) + len(skipped)}: "
                   + "; ".join(reason for _, reason in skipped[:5]) + ("; ..." if len(skipped) > 5 else ""))
    if cfg.limit and cfg.limit < len(images):  # spread out: HW8-style files may be sorted by pose
        images = images[np.linspace(0, len(images) - 1, cfg.limit).round().astype(int)]
    if len(images) < MIN_TRAINING_IMAGES:
        raise InputError(f"--limit {cfg.limit}: training needs at least {MIN_TRAINING_IMAGES} images")
    train_idx, holdout_idx = split_holdout(len(images), cfg.holdout, cfg.seed)
    # fail on bad test files now, not after hours of training
    test_set = load_test_set(cfg.test, cfg.labels, cfg.sources, cfg.source_names, size=cfg.image_size,
                             fit=cfg.fit) if cfg.test else None

    if state is None:
        checkpoint.prepare_output(cfg.out, cfg.overwrite)
        torch.manual_seed(cfg.seed)  # the initial weights
        model = create_model(cfg.arch, crop=cfg.crop, image_size=cfg.image_size, fit=cfg.fit, **cfg.model)
        start_epoch, history = 0, []
    else:
        model, start_epoch, history = state["model"], state["epoch"], state["history"]
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
    if cfg.epochs is None:  # stated in the run's record, so --resume continues with the same
        cfg = replace(cfg, epochs=default_epochs(steps_per_epoch))
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
            if cfg.flip and not model.mirror_sensitive:
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
            metrics = _evaluate(model, test_set) if finished and test_set else None
            run = {"config": asdict(cfg), "history": history, "epochs_done": len(history),
                   "finished": finished}
            resume_state = None if finished else {"optimizer": optimizer, "train_config": asdict(cfg),
                                                  "history": history}
            checkpoint.save(model, cfg.out, run, metrics, resume_state)
            if on_epoch is not None and on_epoch({**history[-1], "epochs": cfg.epochs}) and not finished:
                break
        if world > 1:
            dist.barrier()
    return model


def _evaluate(model, test_set):
    scores = anomaly_scores(model, test_set.images, desc="test set")
    return {**metrics_by_source(test_set.labels, scores, test_set.sources), "test_images": len(test_set.images)}


# ---------------------------------------------------------------- how long training will take

EPOCH_OVERHEAD_SECONDS = 0.2  # each epoch ends by calibrating and writing the checkpoint
_STEP_SECONDS = {}  # (architecture, device) -> seconds per training step, measured here once


def seconds_per_step(architecture, device):
    """One training step of the architecture's default size on `device`, timed on random images:
    the first step warms up, the fastest of the next three counts."""
    if (architecture, str(device)) not in _STEP_SECONDS:
        model = create_model(architecture).to(device)
        optimizer = torch.optim.AdamW(model.parameters())
        images = np.random.default_rng(0).integers(0, 256, (TrainConfig.batch_size, 64, 64, 3), dtype=np.uint8)
        x = model.preprocess(images)
        times = []
        for _ in range(4):
            started = time.perf_counter()
            loss = model.loss(x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - started)
        _STEP_SECONDS[architecture, str(device)] = min(times[1:])
    return _STEP_SECONDS[architecture, str(device)]


def training_estimate(image_count, architecture, passes=1, device=None):
    """(epochs, steps per epoch, seconds) of training `image_count` images with `passes` times the
    default number of epochs, on this machine."""
    steps = max(1, len(split_holdout(image_count, TrainConfig.holdout, 0)[0]) // TrainConfig.batch_size)
    epochs = default_epochs(steps) * passes
    step = seconds_per_step(architecture, device or pick_device())
    return epochs, steps, epochs * (steps * step + EPOCH_OVERHEAD_SECONDS)
