"""How long training takes on this machine: training steps timed here, and the epochs a time budget buys."""

import time

import numpy as np
import torch

from ad.models import create_model

EPOCH_OVERHEAD_SECONDS = 0.2  # each epoch ends by calibrating and writing the checkpoint
_STEP_SECONDS = {}  # (architecture, device, batch, image size) -> seconds per training step, measured here once


def seconds_per_call(step, repeats=3):
    """Seconds of one call of `step` (it returns a tensor, read back so that a GPU has finished): the
    first call warms up, the median of the next `repeats` counts."""
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        step().item()
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def seconds_per_step(architecture, device, batch_size=128, image_size=64):
    """One training step of the architecture's default size on `device`, on random images of this
    batch and size (for a model that only remembers, reading one batch)."""
    key = (architecture, str(device), batch_size, image_size)
    if key not in _STEP_SECONDS:
        model = create_model(architecture, image_size=image_size).to(device)
        optimizer = torch.optim.AdamW(model.parameters()) if model.learns_by_gradient else None
        images = np.random.default_rng(0).integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8)
        x = model.preprocess(images)

        def step():
            if optimizer is None:  # a memory (ad.models.patch): its training reads each batch once
                with torch.no_grad():
                    return model.loss(x)
            loss = model.loss(x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.detach()
        _STEP_SECONDS[key] = seconds_per_call(step)
    return _STEP_SECONDS[key]


def epoch_seconds(steps_per_epoch, held_out_batches, step_seconds):
    """One epoch: its steps plus its end (the held-out images scored twice, for the loss and the
    calibration: about one step per batch of them; the checkpoint)."""
    return (steps_per_epoch + held_out_batches) * step_seconds + EPOCH_OVERHEAD_SECONDS


def epochs_within(minutes, steps_per_epoch, held_out_batches, step_seconds):
    """The epochs that fit in `minutes`, never fewer than one."""
    return max(1, int(minutes * 60 / epoch_seconds(steps_per_epoch, held_out_batches, step_seconds)))
