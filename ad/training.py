"""The training loop: one plain loop with held-out calibration, atomic checkpoints, resume and DDP.

`train` reads top to bottom as nanoGPT's train.py does: set up the run, then for each epoch train
one pass, end the epoch (held-out loss, calibration, checkpoint, log) and decide, on every rank at
once, whether to go on.
"""

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.auto import tqdm

from ad import checkpoint
from ad.budget import epoch_seconds, epochs_within, seconds_per_call, seconds_per_step
from ad.data import CENTRE, IMAGE_SIZE, MIN_TRAINING_IMAGES, load_normal_images, load_test_set
from ad.device import pick_device
from ad.errors import InputError
from ad.evaluation import test_metrics
from ad.models import create_model, model_class
from ad.scoring import anomaly_scores, calibrate, explain_all, remember, synthetic_defects_auc


MIN_EPOCHS, MIN_STEPS, MAX_EPOCHS = 3, 100, 50  # what `epochs=None` means
# The warmup takes at most this share of a run: a short run reaches its peak rate too, while runs of
# 400 steps or more (every shipped checkpoint's) keep all of warmup_steps.
WARMUP_SHARE = 0.25
LOG_EVERY = 10  # steps between the progress bar's loss readings (each waits for the GPU)
HELD_OUT_BATCH = 256
MIN_CALIBRATION_IMAGES = 200  # held out of a small set (up to a quarter of it): percentiles need scores
CALIBRATION_TAIL = 5  # held-out images above a percentile's threshold needed to place it (99th: 500 images)


@dataclass
class TrainConfig:
    """Every training option, stated once: train.py's flags and their defaults are read from here."""

    arch: str = "geo"  # the recommended general detector (README: "Any kind of normal image")
    data: str | None = None  # the normal images: .npy, a folder or a .zip; required unless resuming
    out: str | None = None  # the checkpoint folder to write
    epochs: int | None = None  # None: 3 passes, more (up to 50) for small sets: at least min_steps steps
    minutes: float | None = None  # instead of epochs: as many as fit in about this long on this machine
    # (a few real steps are timed first; the epochs chosen are recorded, so --resume keeps them)
    batch_size: int = 128  # fits a CPU's caches; per process under torchrun
    lr: float = 2e-3  # AdamW peak; cosine-decayed to 1% over the run
    weight_decay: float = 1e-4  # light: the small latents already regularise
    warmup_steps: int = 100  # BatchNorm statistics settle before full steps (at most a quarter of the run)
    crop: tuple | None = None  # (top, left, height, width) read by the model; saved in its config
    image_size: int = IMAGE_SIZE  # side of the square every picture is read at (HW8's 64); saved in its config
    fit: str = CENTRE  # how a picture becomes that square: "centre" square or "whole" (ad.data.FITS)
    min_steps: int = MIN_STEPS  # epochs=None: enough passes for this many steps (at most MAX_EPOCHS;
    # an architecture's training_defaults may ask for more)
    holdout: float = 0.05  # share of the normal images kept out of training to calibrate scores (at
    # least MIN_CALIBRATION_IMAGES of them while that leaves three quarters to train on: ad.training.split_holdout)
    flip: bool = True  # mirrored normal images are normal too (faces, most objects)
    limit: int | None = None  # train on N images spread over the set only (quick runs, tests)
    seed: int = 0  # weights, order and augmentation all follow it: runs repeat exactly
    model: dict = field(default_factory=dict)  # architecture options: widths, latent_dim, ...
    test: str | None = None  # a labelled test set, evaluated after the last epoch
    labels: str | None = None  # its 0/1 labels
    sources: str | None = None  # its per-image sources, for metrics per kind of anomaly
    masks: str | None = None  # its defect masks, for pixel metrics (found by itself beside MVTec's test/)
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


@dataclass
class Run:
    """What one run holds, so that each step below takes one argument (nanoGPT keeps these global)."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    images: np.ndarray  # (N, 64, 64, 3) uint8, training and held-out images both
    train_idx: np.ndarray
    holdout_idx: np.ndarray
    test_set: object  # ad.data.TestSet or None
    model: nn.Module
    objective: nn.Module  # the model's loss, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    start_epoch: int
    history: list  # one record per finished epoch
    started: float  # time.time() at the start, less the seconds a resumed run had already spent
    autocast_dtype: torch.dtype = field(init=False)
    scaler: torch.amp.GradScaler = field(init=False)
    per_rank: int = field(init=False)  # training images per process
    batch_size: int = field(init=False)
    steps_per_epoch: int = field(init=False)

    def __post_init__(self):
        cuda = self.device.type == "cuda"
        self.autocast_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and self.autocast_dtype == torch.float16)
        self.per_rank = len(self.train_idx) // self.world
        self.batch_size = min(self.cfg.batch_size, self.per_rank)
        self.steps_per_epoch = self.per_rank // self.batch_size  # no partial batch: BatchNorm dislikes size 1
        if not self.model.learns_by_gradient:  # a memory: filled once (start_run), no steps to take
            self.steps_per_epoch, self.cfg = 0, replace(self.cfg, epochs=1)
        if self.cfg.epochs is None:  # stated in the run's record, so --resume continues with the same
            epochs = budget_epochs(self) if self.cfg.minutes else default_epochs(self.steps_per_epoch,
                                                                               self.cfg.min_steps)
            self.cfg = replace(self.cfg, epochs=epochs)

    @property
    def total_steps(self):
        return self.steps_per_epoch * self.cfg.epochs


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
    """Deterministic (train indices, held-out indices); at least one image on each side. A small set
    holds out more than `share`: a 99th percentile of 15 scores is their largest, so up to a quarter
    of the set (at most MIN_CALIBRATION_IMAGES) goes to calibration."""
    order = np.random.default_rng(seed).permutation(count)
    wanted = max(round(count * share), min(MIN_CALIBRATION_IMAGES, count // 4))
    held = min(max(1, wanted), count - 1) if count > 1 else 0
    return np.sort(order[held:]), np.sort(order[:held])


def calibration_warning(count, percentile):
    """A sentence when `count` held-out normal images are too few to place this percentile of their
    scores (fewer than CALIBRATION_TAIL of them above it); None when they are enough."""
    if count is None or count * (100 - percentile) / 100 >= CALIBRATION_TAIL:
        return None
    return (f"calibrated on {count:,} held-out normal images: too few for percentile {percentile:g} "
            f"(fewer than {CALIBRATION_TAIL} of them score above it), so its threshold is rough; a lower "
            "percentile, or more normal images, makes it firmer")


def default_epochs(steps_per_epoch, min_steps=MIN_STEPS):
    """What `epochs=None` means: 3 passes, more for small sets so that there are `min_steps` steps
    (but at most 50 passes: each ends with calibration and a checkpoint)."""
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(min_steps / max(1, steps_per_epoch))))


def train_config(**given):
    """The TrainConfig of what a user gave, the architecture's own training defaults filling in the
    rest (a segmenter of 128 px pictures trains on smaller batches, for more steps, than geo)."""
    return TrainConfig(**{**model_class(given.get("arch", TrainConfig.arch)).training_defaults, **given})


def warmup_steps(total_steps, cfg):
    """cfg.warmup_steps, but at most WARMUP_SHARE of the run's steps."""
    return min(cfg.warmup_steps, int(total_steps * WARMUP_SHARE))


def learning_rate(step, total_steps, cfg):
    """Linear warmup to cfg.lr, then a cosine decay to 1% of it by the end of the run."""
    warmup = warmup_steps(total_steps, cfg)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train(cfg, on_epoch=None):
    """Train, calibrate and checkpoint one model; returns the trained model (on every rank).

    `on_epoch(record)`, when given, is called after each epoch's checkpoint is written, with
    {"epoch", "epochs", "train_loss", "held_out_loss", "seconds"}; if it returns True, training
    stops there, and the folder holds that epoch's calibrated model (the app's Stop button).
    Under torchrun it is called on rank 0, and every rank stops at the same epoch.
    """
    rank, world, local_rank = setup_distributed()
    try:
        run = start_run(cfg, rank, world, local_rank)
        for epoch in range(run.start_epoch, run.cfg.epochs):
            train_loss = train_one_epoch(run, epoch)
            stop = end_epoch(run, epoch, train_loss, on_epoch) if rank == 0 else False
            if stop_everywhere(run, stop):
                break
        if world > 1:
            dist.barrier()  # every rank done before any tears the group down (gloo aborts otherwise)
        return run.model
    finally:
        if world > 1:
            dist.destroy_process_group()


# ---------------------------------------------------------------- setup


def start_run(cfg, rank, world, local_rank):
    """Check the options, read the images, build (or restore) the model and its optimizer."""
    if not cfg.out or not (cfg.resume or cfg.data):
        raise InputError("training needs the normal images (--data) and a folder to write (--out); "
                         "--resume needs only --out")
    if cfg.minutes is not None and not cfg.minutes > 0:
        raise InputError(f"--minutes {cfg.minutes:g}: expected a training time of more than 0 minutes")
    if rank == 0:
        checkpoint.remove_leftovers(cfg.out)
    state = checkpoint.read_resume_state(cfg.out) if cfg.resume else None
    if state is not None:  # continue with the settings the run started with
        cfg = TrainConfig(**{**state["train_config"], "out": cfg.out, "resume": True, "overwrite": False})
    images = read_training_images(cfg, rank)
    train_idx, holdout_idx = split_holdout(len(images), cfg.holdout, cfg.seed)
    if rank == 0 and (warning := calibration_warning(len(holdout_idx), 99.0)):
        tqdm.write(f"warning: {warning}")
    # fail on bad test files now, not after hours of training
    test_set = load_test_set(cfg.test, cfg.labels, cfg.sources, cfg.source_names, size=cfg.image_size,
                             fit=cfg.fit, masks=cfg.masks) if cfg.test else None

    if state is None:
        checkpoint.prepare_output(cfg.out, cfg.overwrite)
        torch.manual_seed(cfg.seed)  # the initial weights
        model = create_model(cfg.arch, crop=cfg.crop, image_size=cfg.image_size, fit=cfg.fit, **cfg.model)
        start_epoch, history = 0, []
    else:
        model, start_epoch, history = state["model"], state["epoch"], state["history"]
    device = pick_device(local_rank)
    model.to(device)
    if state is None:  # a model (or member) that only remembers normal images fills its memory first
        remember(model, images[train_idx], cfg.seed)
    objective = Objective(model)
    if world > 1 and model.learns_by_gradient:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = (torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
                 if model.learns_by_gradient else None)  # a memory has nothing to step
    if state is not None and optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    started = time.time() - (history[-1]["seconds"] if history else 0.0)
    return Run(cfg, rank, world, device, images, train_idx, holdout_idx, test_set, model, objective,
               optimizer, start_epoch, history, started)


def read_training_images(cfg, rank):
    """The normal images (cfg.limit of them, spread out); unreadable files are named on rank 0."""
    images, skipped = load_normal_images(cfg.data, cfg.image_size, cfg.fit)  # the model's input format
    if skipped and rank == 0:
        tqdm.write(f"skipped {len(skipped)} unreadable file(s) of {len(images) + len(skipped)}: "
                   + "; ".join(reason for _, reason in skipped[:5]) + ("; ..." if len(skipped) > 5 else ""))
    if cfg.limit and cfg.limit < len(images):  # spread out: HW8-style files may be sorted by pose
        images = images[np.linspace(0, len(images) - 1, cfg.limit).round().astype(int)]
    if len(images) < MIN_TRAINING_IMAGES:
        raise InputError(f"--limit {cfg.limit}: training needs at least {MIN_TRAINING_IMAGES} images")
    return images


# ---------------------------------------------------------------- one epoch


def train_one_epoch(run, epoch):
    """One pass over this rank's share of the training images; returns the smoothed training loss."""
    cfg = run.cfg
    # Everything random is seeded by (seed, epoch, rank), so a resumed run repeats exactly.
    torch.manual_seed(cfg.seed * 100_003 + epoch * 101 + run.rank)
    order = np.random.default_rng([cfg.seed, epoch]).permutation(run.train_idx)
    order = order[run.rank * run.per_rank:(run.rank + 1) * run.per_rank]
    run.model.train()
    bar = tqdm(range(run.steps_per_epoch), desc=f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}",
               disable=None if run.rank == 0 else True,  # None: only on a terminal, not in logs
               leave=False, unit="batch")
    smoothed = None
    for i in bar:
        lr = learning_rate(epoch * run.steps_per_epoch + i, run.total_steps, cfg)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        batch = np.sort(order[i * run.batch_size:(i + 1) * run.batch_size])  # sorted reads suit a memmap
        loss = train_step(run, run.images[batch])
        smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss  # stays on the device
        if not bar.disable and i % LOG_EVERY == 0:
            bar.set_postfix(loss=f"{smoothed.item():.4f}")  # .item() waits for the GPU: only here
    if smoothed is None:  # no steps (a memory): the loss of one batch of its training images as it stands
        with torch.inference_mode():
            smoothed = run.model.loss(run.model.preprocess(run.images[np.sort(order[:run.batch_size])]))
    return smoothed.item()


def train_step(run, images):
    """One optimizer step on a batch of uint8 images; returns the loss, detached, on the device."""
    x = run.model.preprocess(images)  # (B, C, H, W)
    if run.cfg.flip and not run.model.mirror_sensitive:
        mirror = torch.rand(len(x), device=run.device) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    with torch.autocast(run.device.type, dtype=run.autocast_dtype, enabled=run.device.type == "cuda"):
        loss = run.objective(x)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return loss.detach().float()


# ---------------------------------------------------------------- end of an epoch (rank 0)


def end_epoch(run, epoch, train_loss, on_epoch):
    """Held-out loss, calibration, the checkpoint and the log line; returns whether on_epoch asks
    to stop before the last epoch."""
    cfg, model = run.cfg, run.model
    held_out = run.images[run.holdout_idx]
    model.eval()
    with torch.inference_mode():
        held_out_loss = float(np.mean([model.loss(model.preprocess(held_out[j:j + HELD_OUT_BATCH])).item()
                                       for j in range(0, len(held_out), HELD_OUT_BATCH)]))
    remember(model, run.images[run.train_idx], cfg.seed, learned=True)  # memories of what it now sees
    calibrate(model, held_out)
    run.history.append({"epoch": epoch + 1, "train_loss": train_loss, "held_out_loss": held_out_loss,
                        "seconds": round(time.time() - run.started, 1)})
    tqdm.write(f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, "
               f"held-out loss {held_out_loss:.4f}")
    finished = epoch + 1 == cfg.epochs
    save_checkpoint(run, finished)
    asked = on_epoch is not None and on_epoch({**run.history[-1], "epochs": cfg.epochs})
    return bool(asked) and not finished


def save_checkpoint(run, finished):
    """The calibrated model and the run's record; the test metrics after the last epoch, the resume
    state before it."""
    cfg, history = run.cfg, run.history
    metrics = evaluate_test_set(run.model, run.test_set) if finished and run.test_set else None
    record = {"config": asdict(cfg), "calibration_images": len(run.holdout_idx), "history": history,
              "epochs_done": len(history), "finished": finished}
    if finished:  # without labels, the one figure a model can honestly have (the app's menus show it)
        record["synthetic_defects_roc_auc"] = synthetic_defects_auc(run.model, run.images[run.holdout_idx])
    resume_state = None if finished else {"optimizer": run.optimizer, "train_config": asdict(cfg),
                                          "history": history}
    checkpoint.save(run.model, cfg.out, record, metrics, resume_state)


def evaluate_test_set(model, test_set):
    if test_set.masks is None:
        scores, maps = anomaly_scores(model, test_set.images, desc="test set"), None
    else:
        scores, maps, _ = explain_all(model, test_set.images, desc="test set")
    return {**test_metrics(test_set, scores, maps), "test_images": len(test_set.images)}


def stop_everywhere(run, stop):
    """Rank 0's decision, on every rank: a rank that went on alone would wait forever at the next
    collective. The broadcast is also the epoch's barrier: the others wait while rank 0 saves."""
    if run.world == 1:
        return stop
    decision = torch.tensor([int(stop)], device=run.device if run.device.type == "cuda" else "cpu")
    dist.broadcast(decision, src=0)
    return bool(decision.item())


# ---------------------------------------------------------------- how long training will take


def training_estimate(image_count, architecture, minutes=None, device=None):
    """(epochs, steps per epoch, seconds) of training `image_count` images on this machine: within
    `minutes` (the app's training lengths), or the architecture's default epochs."""
    cfg = train_config(arch=architecture)
    train_count, held_out = (len(part) for part in split_holdout(image_count, cfg.holdout, 0))
    batch = min(cfg.batch_size, max(1, train_count))
    steps = max(1, train_count // batch)
    held_out_batches = epoch_end_batches(create_model(architecture), held_out, train_count, batch)
    step = seconds_per_step(architecture, device or pick_device(), batch, cfg.image_size)
    if not model_class(architecture).learns_by_gradient:  # one pass that reads every image once
        return 1, 0, epoch_seconds(steps, held_out_batches, step)
    epochs = (epochs_within(minutes, steps, held_out_batches, step) if minutes
              else default_epochs(steps, cfg.min_steps))
    return epochs, steps, epochs * epoch_seconds(steps, held_out_batches, step)


def epoch_end_batches(model, held_out, train_count, batch):
    """The batches an epoch's end reads, about a step each: the held-out images (ad.budget.epoch_seconds),
    and the training images whose features a learning memory remembers again (geo's)."""
    remembered = sum(min(m.memory_images or train_count, train_count) for m in [model, *model.members]
                     if m.remembers and m.learns_by_gradient)
    return math.ceil(held_out / batch) + math.ceil(remembered / batch)


def budget_epochs(run):
    """cfg.minutes as epochs of this run, from its own step timed here; rank 0's count on every rank."""
    step = seconds_per_run_step(run)
    end_batches = epoch_end_batches(run.model, len(run.holdout_idx), len(run.train_idx), run.batch_size)
    epochs = epochs_within(run.cfg.minutes, run.steps_per_epoch, end_batches, step)
    if run.world > 1:
        count = torch.tensor([epochs], device=run.device if run.device.type == "cuda" else "cpu")
        dist.broadcast(count, src=0)
        epochs = int(count.item())
    if run.rank == 0:
        tqdm.write(f"--minutes {run.cfg.minutes:g}: a step takes {step:.3g} s here, so {epochs} epoch(s) "
                   f"of {run.steps_per_epoch} steps")
    return epochs


def seconds_per_run_step(run):
    """One training step of this run (its model, batch and device), on copies of the model and
    optimizer under a forked random stream: the run then trains exactly as it would untimed."""
    model = copy.deepcopy(run.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.cfg.lr, weight_decay=run.cfg.weight_decay)
    trial = SimpleNamespace(**{**vars(run), "model": model, "objective": Objective(model), "optimizer": optimizer,
                               "scaler": torch.amp.GradScaler("cuda", enabled=run.scaler.is_enabled())})
    batch = run.images[run.train_idx[:run.batch_size]]
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        return seconds_per_call(lambda: train_step(trial, batch))
