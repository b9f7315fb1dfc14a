"""Models visitors train in the app: each visitor's own, on disk only while their session lasts.

A session's models live in one temporary folder, named in the visitor's gr.State; Gradio calls
`forget` when the session ends or its time runs out, and the folder goes. Another visitor never
sees them: they are reached only through that visitor's state.
"""

import queue
import re
import shutil
import tempfile
import threading
from pathlib import Path

from ad import checkpoint
from ad.errors import InputError
from ad.training import train
from ad.ui.lru import LRU

MAX_MODELS_PER_SESSION = 3  # a fourth replaces the oldest: a checkpoint is at most 15 MB
SESSION_SECONDS = 2 * 3600  # after two hours a visitor's models are deleted even if the tab stays open
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")  # a folder's name, and the model's
LOADED_MODELS = 8  # models kept in memory across all sessions; the rest are read again when used


def new_session():
    return {"folder": tempfile.mkdtemp(prefix="ad-session-"), "models": {}}


def forget(session):
    """gr.State's delete_callback: the session ended or expired."""
    if session and session.get("folder"):
        shutil.rmtree(session["folder"], ignore_errors=True)


def model_folder(session, name):
    """Where a new model called `name` goes; the oldest goes first when the session is full."""
    if not MODEL_NAME.match(name):
        raise InputError(f"model name '{name}': expected up to 40 letters, digits, '-', '_' or '.'")
    if name in session["models"] or name in ("", "."):
        raise InputError(f"a model called '{name}' exists already in this session; choose another name")
    while len(session["models"]) >= MAX_MODELS_PER_SESSION:
        oldest = next(iter(session["models"]))
        shutil.rmtree(session["models"].pop(oldest), ignore_errors=True)
    return Path(session["folder"]) / name


class LoadedModels:
    """The session models in memory, shared by every session, keyed by folder; the rest are read again."""

    def __init__(self, device):
        self.device, self.models = device, LRU(LOADED_MODELS)

    def get(self, folder):
        model = self.models.get(folder)
        if model is None:
            model = self.models.put(folder, checkpoint.load(folder, device=self.device))
        return model


def training_epochs(cfg, stop):
    """Train in a thread of its own, handing over each epoch's record as it ends (the page shows
    progress meanwhile); `stop()` true ends the run after that epoch, keeping its model. The images
    file (cfg.data) goes afterwards; a failed run leaves no model folder behind."""
    records, outcome = queue.Queue(), {}

    def run():
        try:
            train(cfg, on_epoch=lambda record: records.put(record) or stop())
        except Exception as e:  # noqa: BLE001 - handed to the page below
            outcome["error"] = e
        records.put(None)

    threading.Thread(target=run, daemon=True).start()
    while (record := records.get()) is not None:
        yield record
    Path(cfg.data).unlink(missing_ok=True)
    if "error" in outcome:
        shutil.rmtree(cfg.out, ignore_errors=True)
        error = outcome["error"]
        raise error if isinstance(error, InputError) else InputError(f"training failed: {error}")
