"""The app's callbacks: plain functions of the zoo and the user's inputs; user errors become gr.Error."""

import functools
import hashlib
import inspect
import io
import json
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import torch
from PIL import Image

from ad import checkpoint
from ad.data import IMAGE_SUFFIXES, load_images, load_test_set, open_image
from ad.device import pick_device
from ad.errors import InputError
from ad.models import create_model
from ad.scoring import anomaly_scores, detect, verdict
from ad.training import TrainConfig, default_epochs, split_holdout, train
from ad.ui import render
from ad.ui.evaluation import PERCENTILE, EvaluationRun
from ad.ui.sessions import LoadedModels, model_folder, new_session

MAX_LATENT_SLIDERS = 16
MAX_TRAIN_IMAGES = 20_000  # a visitor's upload; larger sets train with train.py
TRAINING_BATCH = TrainConfig.batch_size
LENGTHS = {"quick": 1, "standard": 3}  # times the default number of passes
EPOCH_OVERHEAD_SECONDS = 0.2  # each epoch ends by calibrating and writing the checkpoint
KEPT_DETECTIONS = 256  # a few MB of pictures
KEPT_EVALUATIONS = 4  # test-set runs kept for the threshold slider, newest first
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")

LOG = logging.getLogger("ad.app")
SMALL_IMAGE = 32  # px: an upload smaller than this on its short side is mostly made up by the upscaling

try:  # ZeroGPU Spaces lend a GPU per call to functions wrapped with spaces.GPU
    import spaces
    on_gpu = spaces.GPU
except ImportError:
    def on_gpu(function):
        return function


def user_errors(function):
    """Show a user's mistake as one message in the UI (no server path in it), and as one line in the
    server's log instead of a traceback; real faults still print theirs."""
    def refuse(error):
        message = public_message(str(error))
        LOG.warning("refused in %s: %s", function.__name__, message)
        return gr.Error(message, title="Cannot use this input", print_exception=False)

    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def generator(*args, **kwargs):
            try:
                yield from function(*args, **kwargs)
            except InputError as e:
                raise refuse(e) from None
        return generator

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except InputError as e:
            raise refuse(e) from None
    return wrapper


def public_message(message):
    """Uploads live in server folders (/tmp/gradio/<hash>/name.png): a message names the file only."""
    for folder in {tempfile.gettempdir(), os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()}:
        message = re.sub(re.escape(folder.rstrip("/")) + r"/(?:[^\s'\"]*/)?([^/\s'\":]+)", r"\1", message)
    return message


def roc_auc(model):
    return model.metrics.get("roc_auc", {}).get("overall")


def choice_labels(models):
    """(label, name) dropdown entries: each model in a few words, with its measured ROC-AUC."""
    def label(name, model):
        auc = roc_auc(model)
        return f"{name}: {model.tagline}" + (f" (ROC-AUC {auc:.3f})" if auc is not None else "")
    return [(label(name, m), name) for name, m in models.items()]


@dataclass(frozen=True)
class Upload:
    """A dropped image, read once: the pixels the models read, a digest of its bytes, its own size."""

    image: np.ndarray  # uint8 (64, 64, 3)
    digest: str
    size: tuple  # (width, height) as uploaded


def read_upload(path):
    if not path:
        raise InputError("no image yet: drop, upload or paste one first")
    name = Path(path).name
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{name}: cannot be read ({e.strerror})") from None
    image = open_image(data, name=name)  # refuses what is not an image, with a message
    with Image.open(io.BytesIO(data)) as original:  # the header only: open_image read it already
        size = original.size
    return Upload(image, hashlib.sha1(data).hexdigest(), size)


class Handlers:
    def __init__(self, zoo, sample_testset=None):
        self.zoo = zoo
        self.sample_testset = sample_testset  # a folder in HW8's layout with labels, or None
        self.loaded = LoadedModels(pick_device())  # the visitors' own models, loaded when used
        self.stop_requests = set()  # session hashes whose training should end after this epoch
        self.step_seconds = {}  # architecture -> seconds per training step, measured here
        self.last_upload, self.upload_lock = (None, None), threading.Lock()  # (files, (images, skipped))
        self.evaluations = OrderedDict()  # key -> EvaluationRun: the scores the threshold slider reuses
        self.detections = OrderedDict()  # (model id, image hash) -> (model, Detection)

    def model(self, name, session):
        """A shipped model, or one this visitor trained."""
        if session and name in session["models"]:  # train() refuses the shipped models' names
            return self.loaded.get(session["models"][name])
        return self.zoo.get(name)

    def all_models(self, session):
        return {**self.zoo.models, **{name: self.model(name, session) for name in (session or {}).get("models", {})}}

    # ---------------------------------------------------------------- detect

    @user_errors
    @on_gpu
    def detect(self, image_path, model_name, threshold_percentile=99.0, session=None):
        """Tell how anomalous one image is to one detector trained on normal images, and why.

        Args:
            image_path: the image (a URL or a file: PNG, JPEG, WebP, BMP or GIF; any size)
            model_name: the detector, e.g. "geo" (the most accurate shipped one) or "fcn"
            threshold_percentile: above this percentile of the detector's held-out normal scores
                (50 to 99.9; default 99) the image is called anomalous

        Returns:
            The image as the model sees it, the model's own picture, the heat map and its overlay;
            the verdict as HTML; the details as data (verdict "normal" or "anomalous", score,
            percentile among normal images, threshold); a chart; what part of the image the model
            reads; and the input beside the reconstruction (or the overlay) for a before/after slider.
        """
        model = self.model(model_name, session)
        upload = read_upload(image_path)
        detection = self._detect(model, upload)
        seen = {"model": model_name, "score": detection.score, "percentile": detection.percentile}
        verdict_html, details, chart = self._judge(model, seen, threshold_percentile)
        pictures = render.pictures(detection)
        after = pictures[1] if pictures[1].shape == pictures[0].shape else pictures[3]  # reconstruction, or overlay
        return (*pictures, verdict_html, details, chart, self._what_it_sees(model, upload.size), (pictures[0], after))

    def _detect(self, model, upload):
        """Detections by (model, image content), the latest few kept: examples clicked again, or an
        image seen by a model picked again, answer at once."""
        key = (id(model), upload.digest)
        with self.upload_lock:
            _, detection = self.detections.get(key, (None, None))
        if detection is None:
            detection = detect(model, upload.image)
            with self.upload_lock:  # the model is kept with it: its id cannot be reused meanwhile
                self.detections[key] = (model, detection)
                while len(self.detections) > KEPT_DETECTIONS:
                    self.detections.popitem(last=False)
        return detection

    def refresh(self, image_path, model_name, threshold_percentile=99.0, session=None):
        """Detect again whenever the image or the model changes; an emptied drop zone empties the page."""
        if not image_path:
            return self.cleared_detection()
        return self.detect(image_path, model_name, threshold_percentile, session)

    @staticmethod
    def cleared_detection():
        return None, None, None, None, "", None, None, "", None

    @staticmethod
    @user_errors
    def painted_image(edited):
        """The painted image as a file in the drop zone, which detects it like any upload."""
        if edited is None or edited.get("composite") is None:
            raise InputError("nothing painted yet: open an image in the editor and paint on it")
        path = Path(tempfile.mkdtemp(prefix="ad-painted-")) / "painted.png"
        edited["composite"].convert("RGB").save(path)
        return str(path)

    @user_errors
    def rejudge(self, details, threshold_percentile, session=None):
        """A new threshold: the verdict again from the score on screen (the details), no model call."""
        if not details:
            return gr.skip(), gr.skip(), gr.skip()
        seen = {key: details[key] for key in ("model", "score", "percentile")}
        return self._judge(self.model(seen["model"], session), seen, threshold_percentile)

    def _judge(self, model, seen, threshold_percentile):
        threshold = model.threshold(threshold_percentile)
        judged = verdict(seen["percentile"], threshold_percentile)
        details = {**seen, "threshold_percentile": float(threshold_percentile), "threshold_score": threshold,
                   "verdict": judged}
        return (render.verdict_html(seen["model"], judged, seen["score"], seen["percentile"], threshold_percentile),
                details, render.normal_scores_chart(model.normal_score_quantiles.cpu().numpy(), seen["score"],
                                                    threshold, judged))

    @staticmethod
    def _what_it_sees(model, size):
        note = f"The model reads {model.sees()}."
        width, height = size
        if min(width, height) < SMALL_IMAGE:
            note += (f"  \n**This image is {width}x{height} px**, much smaller than the 64x64 the models "
                     "read: it was blown up, so its fine detail is made up by the upscaling.")
        return note

    @user_errors
    def model_labels(self, model_name, session=None):
        """The pictures' titles, the legend and the model's description come from the model on screen."""
        model = self.model(model_name, session)
        return (gr.Image(label=model.picture_label), gr.Image(label=f"Heat map. {model.heat_title}"),
                render.legend(model), self.about(model))

    @staticmethod
    def about(model):
        return (f"{model.summary}  \n**Score**: {model.score_description}; higher is more anomalous, and the "
                f"percentile says how it ranks among held-out normal images.  \n**Heat map**: "
                f"{model.heat_title.lower()}, in {model.heat_unit}; full colour at {model.heat_full_scale:g}.")

    # ---------------------------------------------------------------- compare

    @user_errors
    @on_gpu
    def compare(self, image_path, threshold_percentile=99.0, session=None):
        """Ask every detector about one image: who calls it anomalous, and whom to trust.

        Args:
            image_path: the image (a URL or a file: PNG, JPEG, WebP, BMP or GIF; any size)
            threshold_percentile: above this percentile of each detector's held-out normal scores
                (50 to 99.9; default 99) an image is called anomalous

        Returns:
            One picture with a row per detector (input, heat map, overlay, its own picture); a table
            with each detector's ROC-AUC, percentile, verdict and score, the ensemble last and the most
            reliable detector starred; a sentence on who agrees; the heat maps' colour legends.
        """
        models = self.all_models(session)
        if not models:
            raise InputError("no model could be loaded; see the notes at the top of the page")
        upload = read_upload(image_path)  # a clear message for a bad file, before any model
        rows, seen = [], []
        for name, model in models.items():
            detection = self._detect(model, upload)
            seen_input, picture, heat, overlay = render.pictures(detection)
            own = model.picture_label[0].lower() + model.picture_label[1:]
            # the odd-sized picture (geo's views) last, so that the columns align
            rows.append((f"{name}: input, heat map, overlay; {own}", (seen_input, heat, overlay, picture)))
            seen.append({"model": name, "score": detection.score, "percentile": detection.percentile,
                         "roc_auc": roc_auc(model)})
        legends = {(m.heat_full_scale, m.heat_unit): render.legend(m) for m in models.values()}
        return (render.compare_sheet(rows), *self._compare_table(seen, threshold_percentile),
                np.concatenate(list(legends.values())), seen)  # seen: the figures as data, for the threshold

    def compare_or_clear(self, image_path, threshold_percentile=99.0, session=None):
        if not image_path:  # the drop zone emptied: the page empties too
            return None, None, "", None, None
        return self.compare(image_path, threshold_percentile, session)

    def rejudge_all(self, seen, threshold_percentile):
        """Compare's verdicts at a new threshold, from the percentiles already computed."""
        if not seen:
            return gr.skip(), gr.skip()
        return self._compare_table(seen, threshold_percentile)

    @staticmethod
    def _compare_table(seen, threshold_percentile):
        """Rows by model: ROC-AUC, percentile (comparable across models), verdict, score; the ensemble
        (mean percentile) last; the most reliable model starred; a sentence on who disagrees."""
        trusted = max(seen, key=lambda r: r["roc_auc"] or 0.0)["model"] if any(r["roc_auc"] for r in seen) else None
        rows = [[("★ " if r["model"] == trusted else "") + r["model"], r["roc_auc"], round(r["percentile"], 2),
                 verdict(r["percentile"], threshold_percentile), float(f"{r['score']:.4g}")] for r in seen]
        mean = float(np.mean([r["percentile"] for r in seen]))
        rows.append(["ensemble (mean percentile)", None, round(mean, 2), verdict(mean, threshold_percentile),
                     round(mean, 2)])
        table = pd.DataFrame(rows, columns=["model", "ROC-AUC", "percentile", "verdict", "score"])
        styled = table.style.map(lambda v: f"color: {render.VERDICT_COLOURS[v]}; font-weight: bold",
                                 subset=["verdict"]).format({"ROC-AUC": lambda v: "" if pd.isna(v) else f"{v:.3f}",
                                                             "percentile": "{:.2f}", "score": "{:.4g}"})
        return styled, Handlers._disagreement(rows[:-1], trusted)

    @staticmethod
    def _disagreement(rows, trusted):
        by_verdict = {}
        for row in rows:
            by_verdict.setdefault(row[3], []).append(row[0].removeprefix("★ "))
        trust = f" The most reliable here is **{trusted}** (highest ROC-AUC): trust its verdict." if trusted else ""
        if len(by_verdict) == 1:
            return f"All {len(rows)} models agree: **{next(iter(by_verdict))}**.{trust}"
        return ("The models **disagree**: " + "; ".join(f"{', '.join(names)} call{'s' * (len(names) == 1)} it {word}"
                                                      for word, names in sorted(by_verdict.items())) + "." + trust)

    # ---------------------------------------------------------------- evaluate

    @user_errors
    @on_gpu
    def evaluate(self, dataset, images_file, labels_file, sources_file, model_names, mode=PERCENTILE,
                 threshold_percentile=99.0, session=None, progress=gr.Progress()):
        """Score a test set with every chosen model, once, and show all of it; `at_threshold` then
        redraws what moves with the threshold from the same scores."""
        if not model_names:
            raise InputError("pick at least one model to evaluate")
        test_set = self._test_set(dataset, images_file, labels_file, sources_file)
        models = {name: self.model(name, session) for name in model_names}
        scores, started = {}, time.perf_counter()
        for i, (name, model) in enumerate(models.items()):
            def report(fraction, i=i, name=name):
                done = (i + fraction) / len(models)
                left = (time.perf_counter() - started) * (1 - done) / max(done, 1e-9)
                progress(done, desc=f"scoring {len(test_set.images):,} images with {name} "
                         f"({i + 1} of {len(models)}), about {left:.0f} s left")
            scores[name] = anomaly_scores(model, test_set.images, progress=report)
        run = EvaluationRun(test_set, models, scores)
        key = self._keep(run)
        return (key, run.overview(), gr.Dataframe(run.ranking_table(), visible=run.labelled),
                gr.Plot(render.curves_figure(run.curves()) if run.labelled else None, visible=run.labelled),
                gr.Dataframe(run.agreement_table(), visible=len(models) > 1),
                gr.Dropdown(choices=list(models), value=list(models)[0]),
                *self.at_threshold(key, mode, threshold_percentile, list(models)[0]),
                self.downloads(key, mode, threshold_percentile), gr.Column(visible=True))

    def _keep(self, run):
        """Runs live on the server, a few at a time (20,000 images weigh 250 MB): the page holds a key."""
        key = uuid.uuid4().hex
        with self.upload_lock:
            self.evaluations[key] = run
            while len(self.evaluations) > KEPT_EVALUATIONS:
                self.evaluations.popitem(last=False)
        return key

    def _run(self, key):
        run = self.evaluations.get(key) if key else None
        if run is None:
            raise InputError("evaluate a test set first (runs are kept for a while, then forgotten)")
        return run

    @user_errors
    def at_threshold(self, key, mode, threshold_percentile, inspected):
        """What moves with the threshold, from the scores already computed (no model call): metrics,
        histograms with the line, the errors at the threshold and the ranked images."""
        if key is None:  # the threshold moved before any evaluation: nothing to redraw
            return (gr.skip(),) * 8
        run = self._run(key)
        thresholds = run.thresholds(mode, threshold_percentile)
        inspected = inspected if inspected in run.scores else next(iter(run.scores))
        shown, (fp_count, fn_count) = run.examples(inspected, thresholds[inspected])
        flagged, false_positives, false_negatives = shown
        galleries = [[(render.upscale(np.asarray(run.test_set.images[i])), caption) for i, caption in shown]
                     for shown in (flagged, false_positives, false_negatives)]
        # plain values where nothing else changes: an update (gr.Plot(...)) would encode the figure twice
        return (run.threshold_table(thresholds),
                gr.Dataframe(run.confusion_table(inspected, thresholds[inspected]), visible=run.labelled),
                render.histogram_figure(run.scores, run.test_set.labels, thresholds), galleries[0],
                gr.Gallery(galleries[1], visible=run.labelled, label=f"Normal images flagged by {inspected} "
                           f"(false positives): {fp_count:,}, worst first"),
                gr.Gallery(galleries[2], visible=run.labelled, label=f"Anomalies {inspected} missed "
                           f"(false negatives): {fn_count:,}, worst first"),
                run.image_table(inspected, thresholds[inspected]),
                {"flagged": [i for i, _ in flagged], "false_positives": [i for i, _ in false_positives],
                 "false_negatives": [i for i, _ in false_negatives], "model": inspected})

    @user_errors
    def downloads(self, key, mode, threshold_percentile):
        """The CSVs at the threshold where the slider came to rest, and one zip of them."""
        if key is None:
            return gr.skip()
        run = self._run(key)
        return run.write_files(run.thresholds(mode, threshold_percentile),
                               Path(tempfile.mkdtemp(prefix="ad-evaluate-")))  # per request: users never collide

    @user_errors
    def open_in_detect(self, key, shown, gallery, event: gr.SelectData):
        """A gallery image clicked in Evaluate opens in Detect, with the model that judged it."""
        run = self._run(key)
        index = shown[gallery][event.index]
        path = Path(tempfile.mkdtemp(prefix="ad-open-")) / f"{Path(run.test_set.names[index]).stem}.png"
        Image.fromarray(np.asarray(run.test_set.images[index])).save(path)
        return str(path), shown["model"], gr.Tabs(selected="detect")

    def _test_set(self, dataset, images_file, labels_file, sources_file):
        if dataset == "bundled sample":
            if self.sample_testset is None:
                raise InputError("this app has no bundled sample test set; upload one")
            folder = Path(self.sample_testset)
            images_file, labels_file, sources_file = (
                folder / "testingset.npy", folder / "testing_labels.npy", folder / "testing_sources.npy")
        if not images_file:
            raise InputError("upload the test images: an .npy (labels optional, as .npy or .csv), or a .zip "
                             "(labelled by its sub-folders good/ and one per kind of anomaly, if it has them)")
        return load_test_set(images_file, labels_file, sources_file, require_labels=False)

    # ---------------------------------------------------------------- latent space

    @user_errors
    def encode(self, image_path, model_name, session=None):
        """Encode an image; the first latent dimensions become sliders."""
        model = self.model(model_name, session)
        x = model.preprocess(read_upload(image_path).image[None])
        with torch.inference_mode():
            code = model.encode(x)[0].float().cpu().numpy()
        reach = float(max(1.0, np.ceil(2 * np.abs(code).max())))
        shown = min(len(code), MAX_LATENT_SLIDERS)
        sliders = [gr.Slider(minimum=-reach, maximum=reach, value=float(code[i]), visible=True,
                             label=f"z[{i}]") for i in range(shown)]
        sliders += [gr.Slider(visible=False)] * (MAX_LATENT_SLIDERS - shown)
        note = (f"{model_name}: {len(code)} latent dimensions"
                + (f"; the first {shown} are sliders, the rest stay as encoded" if shown < len(code) else ""))
        return [{"model": model_name, "code": code.tolist()}, self._decode(model, code), note, *sliders]

    def encode_if_image(self, image_path, model_name, session=None):
        """The latent tab follows its image and its model: encode again whenever either changes."""
        if not image_path or not model_name:
            return [gr.skip()] * (3 + MAX_LATENT_SLIDERS)
        return self.encode(image_path, model_name, session)

    @user_errors
    def decode(self, session, state, *values):
        if not state:
            raise InputError("encode an image first")
        model = self.model(state["model"], session)
        code = np.array(state["code"], dtype=np.float32)
        code[:min(len(code), len(values))] = values[:len(code)]
        return self._decode(model, code)

    @staticmethod
    def _decode(model, code):
        with torch.inference_mode():
            decoded = model.decode(torch.as_tensor(code, dtype=torch.float32, device=model.device)[None])
        return render.model_view(decoded[0])

    # ---------------------------------------------------------------- train

    @functools.cached_property
    def sample_faces_file(self):
        """The bundled sample set's normal faces as one .npy, written once per app."""
        test_set = load_test_set(Path(self.sample_testset) / "testingset.npy",
                                 Path(self.sample_testset) / "testing_labels.npy")
        path = Path(tempfile.mkdtemp(prefix="ad-sample-")) / "sample_faces.npy"
        np.save(path, np.asarray(test_set.images[test_set.labels == 0]))
        return str(path)

    def sample_faces(self):
        """A training set to try the tab with."""
        if self.sample_testset is None:
            raise InputError("this app has no bundled sample set; upload images")
        return [self.sample_faces_file]

    @staticmethod
    def _training_source(files, scratch):
        """The uploads as one thing train.py reads: an .npy, a .zip, or the image files gathered
        in the folder `scratch`."""
        files = [Path(f) for f in (files or [])]
        if not files:
            raise InputError("no training images yet: upload a .zip of images, several image files or an .npy")
        if len(files) == 1 and files[0].suffix.lower() in (".zip", ".npy"):
            return files[0]
        if any(f.suffix.lower() not in IMAGE_SUFFIXES for f in files):
            raise InputError("upload one .zip or one .npy, or any number of image files, not a mix "
                             f"(got {', '.join(sorted({f.suffix or f.name for f in files}))})")
        for i, f in enumerate(files):
            shutil.copy(f, Path(scratch) / f"{i:05d}-{f.name}")  # two uploads may share a name
        return Path(scratch)

    def _read_training_images(self, files):
        """(images, skipped) of an upload, read once: the tab inspects it on every change of
        architecture or length, then trains on it."""
        key = tuple(map(str, files or ()))
        with self.upload_lock:
            cached = self.last_upload[1] if self.last_upload[0] == key else None
        if cached is None:
            skipped = []
            with tempfile.TemporaryDirectory(prefix="ad-upload-") as scratch:
                images, _ = load_images(self._training_source(files, scratch), skipped)
            cached = images, skipped
            with self.upload_lock:
                self.last_upload = (key, cached)
        if len(cached[0]) > MAX_TRAIN_IMAGES:
            raise InputError(f"{len(cached[0]):,} images; the app trains on at most {MAX_TRAIN_IMAGES:,} "
                             "(train larger sets with train.py)")
        return cached

    def _seconds_per_step(self, architecture):
        if architecture not in self.step_seconds:  # measured once per architecture on this machine
            model = create_model(architecture).to(pick_device())
            optimizer = torch.optim.AdamW(model.parameters())
            images = np.random.default_rng(0).integers(0, 256, (TRAINING_BATCH, 64, 64, 3), dtype=np.uint8)
            x = model.preprocess(images)
            times = []
            for _ in range(4):  # the first step warms up; the fastest of the others counts
                started = time.perf_counter()
                loss = model.loss(x)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                times.append(time.perf_counter() - started)
            self.step_seconds[architecture] = min(times[1:])
        return self.step_seconds[architecture]

    @user_errors
    def inspect_training_set(self, files, architecture, length):
        """How many images the upload holds, what was skipped and why, a few of them, and the
        passes and time that the chosen length means on this machine."""
        if not files:
            return "Upload normal images (or use the sample faces) to train on.", [], None
        images, skipped = self._read_training_images(files)
        steps = max(1, len(split_holdout(len(images), TrainConfig.holdout, 0)[0]) // TRAINING_BATCH)
        epochs = default_epochs(steps) * LENGTHS[length]
        seconds = epochs * (steps * self._seconds_per_step(architecture) + EPOCH_OVERHEAD_SECONDS)
        report = f"**{len(images):,} images** read"
        if skipped:
            report += (f", **{len(skipped)} skipped**: " + "; ".join(reason for _, reason in skipped[:3])
                       + ("; ..." if len(skipped) > 3 else ""))
        report += (f".  \n{length.capitalize()} training: {epochs} passes ({epochs * steps} steps), about "
                   f"{max(5, round(seconds, -1)):.0f} s on this machine.")
        shown = images[np.linspace(0, len(images) - 1, min(12, len(images))).astype(int)]
        return report, [render.upscale(np.asarray(x)) for x in shown], epochs

    @user_errors
    @on_gpu
    def train(self, files, architecture, epochs, crop="", name="", session=None, request: gr.Request = None,
              progress=gr.Progress()):
        """Train a detector on the uploaded normal images; it joins this visitor's models."""
        progress(0, desc="reading the images")
        images, _ = self._read_training_images(files)
        session = session or new_session()
        name = (name or "").strip() or f"my-{architecture}-{len(session['models']) + 1}"
        if not MODEL_NAME.match(name):
            raise InputError(f"model name '{name}': expected up to 40 letters, digits, '-', '_' or '.'")
        if name in self.zoo.models:
            raise InputError(f"'{name}' is a shipped model's name; choose another")
        out = model_folder(session, name)
        source = Path(session["folder"]) / f"{name}-images.npy"  # read once: training reads this
        np.save(source, images)
        key = request.session_hash if request else None
        self.stop_requests.discard(key)
        records, outcome = queue.Queue(), {}
        cfg = TrainConfig(arch=architecture, data=str(source), out=str(out), crop=crop or None,
                          epochs=int(epochs) if epochs else None, command=f"the app's Train tab ({name})")

        def run():
            try:
                train(cfg, on_epoch=lambda record: records.put(record) or key in self.stop_requests)
            except Exception as e:  # noqa: BLE001 - handed to the page below
                outcome["error"] = e
            records.put(None)

        threading.Thread(target=run, daemon=True).start()
        history = []
        while (record := records.get()) is not None:
            history.append(record)
            progress(record["epoch"] / record["epochs"], desc=f"epoch {record['epoch']}/{record['epochs']}")
            yield (gr.skip(), f"Epoch {record['epoch']} of {record['epochs']}: held-out loss "
                   f"{record['held_out_loss']:.4f}, {record['seconds']:.0f} s", render.loss_figure(history),
                   *[gr.skip()] * 6)
        source.unlink(missing_ok=True)
        if "error" in outcome:
            shutil.rmtree(out, ignore_errors=True)
            error = outcome["error"]
            raise error if isinstance(error, InputError) else InputError(f"training failed: {error}")
        self.stop_requests.discard(key)
        session["models"][name] = str(out)
        model = self.loaded.get(str(out))
        stopped = len(history) < history[-1]["epochs"]
        status = (f"**{name}** is ready{' (stopped after epoch ' + str(len(history)) + ')' if stopped else ''}: "
                  f"pick it in Detect, Compare and Evaluate. It lasts as long as this page's session.")
        models = self.all_models(session)
        decodable = [n for n, m in models.items() if hasattr(m, "decode")]
        yield (name, status, render.loss_figure(history), self._card(model, out, len(images)),
               str(checkpoint.to_zip(out, Path(session["folder"]) / f"{name}.zip")), session,
               gr.Dropdown(choices=choice_labels(models), value=name), gr.Dropdown(choices=list(models)),
               gr.Dropdown(choices=decodable))

    def stop_training(self, request: gr.Request):
        """The Stop button: the run ends after the epoch it is in, keeping that epoch's model."""
        self.stop_requests.add(request.session_hash)
        return "Stopping after this epoch..."

    @staticmethod
    def _card(model, folder, image_count):
        record = model.training_record
        return (f"**{Path(folder).name}**: `{model.architecture}`, {model.parameter_count():,} parameters, "
                f"trained on {image_count:,} images ({record['config']['holdout']:.0%} held out "
                f"to calibrate it) for {len(record.get('history', []))} epochs in "
                f"{record.get('history', [{}])[-1].get('seconds', 0):.0f} s. Options: "
                f"`{json.dumps({k: v for k, v in model.config.items() if k != 'architecture'})}`  \n"
                f"{model.summary}")

    @user_errors
    def push(self, name, repo_id, token, session=None):
        """Upload one of this visitor's models; the token is used for this call only, never kept."""
        if not session or name not in session["models"]:
            raise InputError("train a model first: only this session's models can be pushed from here")
        url = checkpoint.push(session["models"][name], (repo_id or "").strip(), token=token or None)
        return f"Pushed **{name}** to the Hub: {url}"
