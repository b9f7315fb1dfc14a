"""Models visitors train in the app: each visitor's own, on disk only while their session lasts.

A session's models live in one temporary folder, named in the visitor's gr.State; Gradio calls
`forget` when the session ends or its time runs out, and the folder goes. Another visitor never
sees them: they are reached only through that visitor's state.
"""

import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from ad import checkpoint
from ad.errors import InputError

MAX_MODELS_PER_SESSION = 3  # a fourth replaces the oldest: a checkpoint is at most 15 MB
SESSION_SECONDS = 2 * 3600  # after two hours a visitor's models are deleted even if the tab stays open
LOADED_MODELS = 8  # models kept in memory across all sessions; the rest are read again when used


def new_session():
    return {"folder": tempfile.mkdtemp(prefix="ad-session-"), "models": {}}


def forget(session):
    """gr.State's delete_callback: the session ended or expired."""
    if session and session.get("folder"):
        shutil.rmtree(session["folder"], ignore_errors=True)


def model_folder(session, name):
    """Where a new model called `name` goes; the oldest goes first when the session is full."""
    if name in session["models"] or name in ("", "."):
        raise InputError(f"a model called '{name}' exists already in this session; choose another name")
    while len(session["models"]) >= MAX_MODELS_PER_SESSION:
        oldest = next(iter(session["models"]))
        shutil.rmtree(session["models"].pop(oldest), ignore_errors=True)
    return Path(session["folder"]) / name


class LoadedModels:
    """A small cache of loaded session models, shared by every session, keyed by folder."""

    def __init__(self, device):
        self.device, self.models, self.lock = device, OrderedDict(), threading.Lock()

    def get(self, folder):
        with self.lock:
            if folder in self.models:
                self.models.move_to_end(folder)
                return self.models[folder]
        model = checkpoint.load(folder, device=self.device)
        with self.lock:
            self.models[folder] = model
            while len(self.models) > LOADED_MODELS:
                self.models.popitem(last=False)
        return model
