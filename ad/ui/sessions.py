"""Models visitors train in the app: each visitor's own, on disk only while their session lasts.

A session's models live in one temporary folder, found by the session's key: a random, unguessable
string that the page keeps in the visitor's gr.State and in their browser (gr.BrowserState), so a
reload finds the models again. Another visitor never sees them: only that key reaches them. A
session ends SESSION_SECONDS after it began, and its folder goes.
"""

import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

from ad import checkpoint
from ad.errors import InputError
from ad.training import train
from ad.ui.lru import LRU

MAX_MODELS_PER_SESSION = 3  # a fourth replaces the oldest: a checkpoint is at most 15 MB
SESSION_SECONDS = 2 * 3600  # after two hours a visitor's models are deleted even if the tab stays open
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")  # a folder's name, and the model's
LOADED_MODELS = 8  # models kept in memory across all sessions; the rest are read again when used


class Sessions:
    """The live sessions by key, shared by every visitor; each lasts `lifetime` seconds from its start."""

    def __init__(self, lifetime=SESSION_SECONDS):
        self.lifetime, self.live, self.lock = lifetime, {}, threading.Lock()

    def get(self, key):
        """The session this key names, or None (no key, a made-up one, or one whose time is up)."""
        self.forget_expired()
        with self.lock:
            return self.live.get(key) if isinstance(key, str) else None

    def get_or_new(self, key):
        """(key, session): the live session this key names, or a new one."""
        session = self.get(key)
        return (key, session) if session is not None else self.new()

    def new(self):
        """(key, session) of a new session."""
        self.forget_expired()
        key = secrets.token_urlsafe(24)  # 192 random bits: nobody finds another's models by guessing
        session = {"folder": tempfile.mkdtemp(prefix="ad-session-"), "models": {}, "started": time.monotonic()}
        with self.lock:
            self.live[key] = session
        return key, session

    def forget_expired(self):
        now = time.monotonic()
        with self.lock:
            expired = [key for key, session in self.live.items() if now - session["started"] > self.lifetime]
            gone = [self.live.pop(key) for key in expired]
        for session in gone:
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
        error = outcome["error"]  # about the images: named as the visitor knows them, not by the server's file
        message = str(error) if isinstance(error, InputError) else f"training failed: {error}"
        raise InputError(message.replace(Path(cfg.data).name, "the uploaded images"))
