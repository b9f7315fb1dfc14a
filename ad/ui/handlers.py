"""The app's callbacks: plain functions of the zoo and the user's inputs; user errors become gr.Error.

A callback answers with a dict {component: value}: those change, the others stay. The components are
the page's (`Handlers.page`, laid out by ad.ui.tabs, wired by ad.ui.events)."""

import functools
import tempfile
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from ad import checkpoint
from ad.device import pick_device
from ad.errors import InputError
from ad.scoring import detect, verdict
from ad.training import train_config, training_estimate
from ad.ui import render, texts, uploads
from ad.ui.errors import user_errors
from ad.ui.lru import LRU
from ad.ui.sessions import LoadedModels, Sessions, model_folder, training_epochs
from ad.ui.stored_run import PERCENTILE, score_models
from ad.ui.uploads import names_image_formats, read_upload

MAX_LATENT_SLIDERS = 16
LENGTHS = {"quick": 1, "standard": 5}  # minutes of training, whatever the machine: a faster one trains more
KEPT_DETECTIONS = 256  # a few MB of pictures
KEPT_EVALUATIONS = 4  # test-set runs kept for the threshold slider (20,000 images weigh 250 MB)

try:  # ZeroGPU Spaces lend a GPU per call to functions wrapped with spaces.GPU
    import spaces
    on_gpu = spaces.GPU
except ImportError:
    def on_gpu(function):
        return function


class Handlers:
    """The callbacks of one app: its models, the visitors' own, and what is kept between calls."""

    def __init__(self, zoo, sample_testset=None):
        self.zoo = zoo
        self.sample_testset = sample_testset  # a folder in HW8's layout with labels, or None
        self.page = None  # the components, by tab (ad.ui.tabs.build_demo sets it): what callbacks answer into
        self.loaded = LoadedModels(pick_device())  # the visitors' own models, loaded when used
        self.sessions = Sessions()  # key -> a visitor's folder of models; the page holds the key
        self.stop_requests = set()  # session hashes whose training should end after this epoch
        self.training_uploads = LRU(1)  # files -> (images, skipped): inspected on every change, then trained
        self.evaluations = LRU(KEPT_EVALUATIONS)  # key -> EvaluationRun: the scores the threshold slider reuses
        self.detections = LRU(KEPT_DETECTIONS)  # (model id, image digest) -> (model, Detection)

    def model(self, name, key):
        """A shipped model, or one this visitor (whose session `key` names) trained."""
        own = self._own(key)  # train() refuses the shipped models' names
        return self.loaded.get(own[name]) if name in own else self.zoo.get(name)

    def all_models(self, key):
        return {**self.zoo.models, **{name: self.model(name, key) for name in self._own(key)}}

    def _own(self, key):  # this visitor's models: name -> folder
        return (self.sessions.get(key) or {}).get("models", {})

    def restore(self, key):
        """The page (re)loaded: a key kept in the browser that names a live session brings its models
        back into the menus; any other key is dropped (the next training starts a new session)."""
        live = self.sessions.get(key) is not None
        return {self.page.session: key, **self._menus(key)} if live else {self.page.session: None}

    def _menus(self, key, chosen=None):
        """The model menus with this visitor's own models in them; `chosen` picked in Detect."""
        models, page, picked = self.all_models(key), self.page, {"value": chosen} if chosen else {}
        return {page.detect.model: gr.Dropdown(choices=texts.choice_labels(models), **picked),
                page.evaluate.models: gr.Dropdown(choices=list(models)),
                page.latent.model: gr.Dropdown(choices=self.latent_names(key))}

    # ---------------------------------------------------------------- detect

    @user_errors
    @on_gpu
    @names_image_formats
    def detect(self, image_path, model_name, threshold_percentile=99.0, session=None):
        """Tell how anomalous one image is to one detector trained on normal images, and why.

        Args:
            image_path: the image (a URL or a file: {formats}; any size)
            model_name: the detector, e.g. "geo" (the most accurate shipped one) or "fcn"
            threshold_percentile: above this percentile of the detector's held-out normal scores
                (50 to 99.9; default 99) the image is called anomalous

        Returns:
            The image as the model sees it, the model's own picture, the heat map and its overlay;
            the verdict as HTML; the details as data (verdict "normal" or "anomalous", score,
            percentile among normal images, threshold); a chart; what part of the image the model
            reads; and the input beside the reconstruction (or the overlay) for a before/after slider.
        """
        ui, model, upload = self.page.detect, self.model(model_name, session), read_upload(image_path)
        detection = self._detect(model, upload)
        seen = {"model": model_name, "score": detection.score, "percentile": detection.percentile,
                "image": upload.digest}
        shown = render.pictures(detection)
        return {ui.seen: shown.input, ui.picture: shown.picture, ui.heat: shown.heat,
                ui.note: texts.what_it_sees(model, upload.size), **self._judge(model, seen, threshold_percentile),
                ui.before_after: (shown.input, shown.picture if model.reconstructs else shown.overlay)}

    def _detect(self, model, upload):
        """Detections by (model, image content), the latest few kept: examples clicked again, or an
        image seen by a model picked again, answer at once."""
        key = (id(model), upload.digest)
        kept = self.detections.get(key)
        if kept is None:  # the model is kept with it: its id cannot be reused meanwhile
            kept = self.detections.put(key, (model, detect(model, upload.pixels(model))))
        return kept[1]

    @user_errors
    def rejudge(self, details, threshold_percentile, session=None):
        """A new threshold: the verdict again from the score on screen (the details), no model call."""
        if not details:
            return gr.skip()
        seen = {key: details[key] for key in ("model", "score", "percentile", "image") if key in details}
        return self._judge(self.model(seen["model"], session), seen, threshold_percentile)

    def _judge(self, model, seen, threshold_percentile):
        """The verdict, and the defect region outlined, at this threshold, from the kept detection."""
        ui, threshold = self.page.detect, model.threshold(threshold_percentile)
        judged = verdict(seen["percentile"], threshold_percentile)
        kept = self.detections.get((id(model), seen.get("image")))
        region = None if kept is None else kept[1].region(threshold_percentile)
        details = {**seen, "threshold_percentile": float(threshold_percentile), "threshold_score": threshold,
                   "verdict": judged, "defect_share": None if region is None else float(region.mean())}
        outlined = {} if kept is None else {ui.overlay: render.outlined(render.heat_overlay(kept[1]), region)}
        return {ui.verdict: render.verdict_html(seen["model"], judged, seen["score"], seen["percentile"],
                                                threshold_percentile, texts.calibration_images(model))
                + render.region_sentence(region, threshold_percentile),
                ui.details: details, **outlined,
                ui.chart: render.normal_scores_chart(model.normal_score_quantiles.cpu().numpy(), seen["score"],
                                                     threshold, judged)}

    painted_image = staticmethod(user_errors(uploads.painted_image))

    @user_errors
    def model_labels(self, model_name, session=None):
        """The pictures' titles, the legend and the model's description come from the model on screen."""
        ui, model = self.page.detect, self.model(model_name, session)
        return {ui.picture: gr.Image(label=model.picture_label),
                ui.heat: gr.Image(label=f"Heat map. {model.heat_title}"),
                ui.legend: render.legend(model), ui.about: texts.about(model),
                ui.before_after: gr.ImageSlider(label=texts.before_after_label(model))}

    # ---------------------------------------------------------------- compare

    @user_errors
    @on_gpu
    @names_image_formats
    def compare(self, image_path, threshold_percentile=99.0, session=None):
        """Ask every detector about one image: who calls it anomalous, and whom to trust.

        Args:
            image_path: the image (a URL or a file: {formats}; any size)
            threshold_percentile: above this percentile of each detector's held-out normal scores
                (50 to 99.9; default 99) an image is called anomalous

        Returns:
            One picture with a row per detector (input, heat map, overlay, its own picture); a table
            with each detector's ROC-AUC, percentile, verdict and score, the ensemble (the mean of their
            percentiles) last and the most reliable detector starred; a sentence on who agrees; the heat
            maps' colour legends; and each detector's figures as data.
        """
        models, ui = self.all_models(session), self.page.compare
        if not models:
            raise InputError("no model could be loaded; see the notes at the top of the page")
        upload = read_upload(image_path)  # a clear message for a bad file, before any model
        rows, seen = [], []
        for name, model in models.items():
            detection = self._detect(model, upload)
            shown = render.pictures(detection)
            own = model.picture_label[0].lower() + model.picture_label[1:]
            # the model's own picture last: it is the one whose shape differs between models (geo's views)
            rows.append((f"{name}: input, heat map, overlay; {own}", (shown.input, shown.heat, shown.overlay,
                                                                         shown.picture)))
            seen.append({"model": name, "score": detection.score, "percentile": detection.percentile,
                         "roc_auc": texts.roc_auc(model)})
        legends = {(m.heat_full_scale, m.heat_unit): render.legend(m) for m in models.values()}
        return {ui.sheet: render.compare_sheet(rows), ui.legends: np.concatenate(list(legends.values())),
                ui.seen: seen, **self.rejudge_all(seen, threshold_percentile)}  # seen: for the threshold

    def rejudge_all(self, seen, threshold_percentile):
        """Compare's verdicts at a new threshold, from the percentiles already computed."""
        if not seen:
            return gr.skip()
        ui, (table, sentence) = self.page.compare, texts.compare_table(seen, threshold_percentile)
        return {ui.table: table, ui.agreement: sentence}

    # ---------------------------------------------------------------- evaluate

    @user_errors
    @on_gpu
    def evaluate(self, dataset, images_file, labels_file, sources_file, model_names, mode=PERCENTILE,
                 threshold_percentile=99.0, session=None, progress=gr.Progress()):
        """Score a test set with every chosen model, once, and show all of it; `at_threshold` then
        redraws what moves with the threshold from the same scores."""
        if not model_names:
            raise InputError("pick at least one model to evaluate")
        if dataset == "bundled sample":
            images_file, labels_file, sources_file = uploads.sample_files(self.sample_testset)
        models = {name: self.model(name, session) for name in model_names}
        run = score_models(models, uploads.uploaded_test_sets(images_file, labels_file, sources_file, models), progress)
        ui, first, key = self.page.evaluate, next(iter(models)), uuid.uuid4().hex  # the page holds a key
        self.evaluations.put(key, run)  # runs live on the server
        return {ui.run: key, ui.overview: run.overview(), ui.defects: self.defect_gallery(key, first),
                ui.ranking: gr.Dataframe(run.ranking_table(), visible=run.labelled),
                ui.curves: gr.Plot(render.curves_figure(run.curves()) if run.labelled else None, visible=run.labelled),
                ui.agreement: gr.Dataframe(run.agreement_table(), visible=len(models) > 1),
                ui.inspected: gr.Dropdown(choices=list(models), value=first),
                **self.at_threshold(key, mode, threshold_percentile, first),
                ui.files: self.downloads(key, mode, threshold_percentile), ui.results: gr.Column(visible=True)}

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
            return gr.skip()
        run, ui = self._run(key), self.page.evaluate
        thresholds = run.thresholds(mode, threshold_percentile)
        inspected = inspected if inspected in run.scores else next(iter(run.scores))
        (flagged, false_positives, false_negatives), (fp_count, fn_count) = run.examples(inspected,
                                                                                      thresholds[inspected])

        def gallery(shown):
            return [(render.upscale(np.asarray(run.images(inspected)[i])), caption) for i, caption in shown]
        # plain values where nothing else changes: an update (gr.Plot(...)) would encode the figure twice
        return {ui.at_threshold: run.threshold_table(thresholds),
                ui.confusion: gr.Dataframe(run.confusion_table(inspected, thresholds[inspected]), visible=run.labelled),
                ui.histograms: render.histogram_figure(run.scores, run.test_set.labels, thresholds),
                ui.flagged: gallery(flagged),
                ui.false_positives: gr.Gallery(gallery(false_positives), visible=run.labelled, label=(
                    f"Normal images flagged by {inspected} (false positives): {fp_count:,}, worst first")),
                ui.false_negatives: gr.Gallery(gallery(false_negatives), visible=run.labelled, label=(
                    f"Anomalies {inspected} missed (false negatives): {fn_count:,}, worst first")),
                ui.ranked: run.image_table(inspected, thresholds[inspected]),
                ui.shown: {"flagged": [i for i, _ in flagged], "false_positives": [i for i, _ in false_positives],
                           "false_negatives": [i for i, _ in false_negatives], "model": inspected}}

    @user_errors
    def defect_gallery(self, key, inspected):
        """The inspected model's heat maps against the true defects (a test set with masks): stored, no model call."""
        if key is None:
            return gr.skip()
        run = self._run(key)
        inspected = inspected if inspected in run.scores else next(iter(run.scores))
        return gr.Gallery(run.defect_pictures(inspected), visible=run.has_masks, label=texts.defects_label(inspected))

    @user_errors
    def downloads(self, key, mode, threshold_percentile):
        """The CSVs at the threshold where the slider came to rest, and one zip of them."""
        if key is None:
            return gr.skip()
        run = self._run(key)
        return run.write_files(run.thresholds(mode, threshold_percentile),
                               Path(tempfile.mkdtemp(prefix="ad-evaluate-")))  # per request: users never collide

    @user_errors
    def open_in_detect(self, key, shown, gallery, mode, threshold_percentile, event: gr.SelectData):
        """A gallery image clicked in Evaluate opens in Detect, judged by the same model at the same
        threshold (best F1's as its percentile); the old details go, lest the slider rejudge them."""
        run, page, name = self._run(key), self.page, shown["model"]
        index = shown[gallery][event.index]
        path = uploads.save_picture(run.images(name)[index], "ad-open-", Path(run.test_set.names[index]).stem)
        threshold = run.thresholds(mode, threshold_percentile)[name]
        percentile = min(99.9, round(float(run.models[name].percentile(threshold)), 1))
        return {page.detect.image: path, page.detect.model: name, page.detect.details: None,
                page.detect.threshold: gr.Slider(value=percentile, minimum=min(50.0, percentile)),
                page.tabs: gr.Tabs(selected="detect")}

    # ---------------------------------------------------------------- latent space

    @user_errors
    def encode(self, image_path, model_name, session=None):
        """Encode an image with an autoencoder; its first latent dimensions become sliders."""
        ui, model = self.page.latent, self._latent_model(model_name, session)
        x = model.preprocess(read_upload(image_path).image[None])
        with torch.inference_mode():
            code = model.encode(x)[0].float().cpu().numpy()
        reach = float(max(1.0, np.ceil(2 * np.abs(code).max())))
        shown = min(len(code), MAX_LATENT_SLIDERS)
        sliders = {slider: gr.Slider(minimum=-reach, maximum=reach, value=round(float(code[i]), 2), visible=True)
                   if i < shown else gr.Slider(visible=False) for i, slider in enumerate(ui.sliders)}
        return {ui.state: {"model": model_name, "code": code.tolist()}, ui.decoded: self._decode(model, code),
                ui.note: texts.latent_note(model_name, len(code), shown), **sliders}

    @user_errors
    def decode(self, session, state, *values):
        if not state:
            raise InputError("encode an image first")
        model = self._latent_model(state["model"], session)
        code = np.array(state["code"], dtype=np.float32)
        code[:min(len(code), len(values))] = values[:len(code)]
        return self._decode(model, code)

    def _latent_model(self, name, session):
        model = self.model(name, session)
        if not model.has_latent:
            raise InputError(texts.no_latent(name, self.latent_names(session)))
        return model

    def latent_names(self, session=None):
        return [name for name, model in self.all_models(session).items() if model.has_latent]

    @staticmethod
    def _decode(model, code):
        with torch.inference_mode():
            decoded = model.decode(torch.as_tensor(code, dtype=torch.float32, device=model.device)[None])
        return render.model_view(decoded[0])

    # ---------------------------------------------------------------- train

    def sample_faces(self):
        """A training set to try the tab with: the bundled sample's normal faces."""
        return [self.sample_faces_file]

    @functools.cached_property
    def sample_faces_file(self):
        return uploads.sample_faces_file(self.sample_testset)  # written once per app

    def _training_set(self, files, architecture):
        """(images, skipped) of an upload at the architecture's input format, read once for the
        inspection and the training that follows."""
        cfg = train_config(arch=architecture)
        key = (tuple(map(str, files or ())), cfg.image_size, cfg.fit)
        found = self.training_uploads.get(key) or self.training_uploads.put(
            key, uploads.training_images(files, cfg.image_size, cfg.fit))
        uploads.refuse_too_many(found[0])
        return found

    @user_errors
    def inspect_training_set(self, files, architecture, length):
        """How many images the upload holds, what was skipped and why, a few of them, and the
        passes and time that the chosen length means on this machine."""
        ui = self.page.train
        if not files:
            return {ui.report: "Upload normal images (or use the sample faces) to train on.", ui.shown: [],
                    ui.epochs: None}
        images, skipped = self._training_set(files, architecture)
        epochs, steps, seconds = training_estimate(len(images), architecture, LENGTHS[length])
        shown = images[np.linspace(0, len(images) - 1, min(12, len(images))).astype(int)]
        return {ui.report: texts.training_report(len(images), skipped, length, epochs, steps, seconds),
                ui.shown: [render.upscale(np.asarray(x)) for x in shown], ui.epochs: epochs}

    @user_errors
    @on_gpu
    def train(self, files, architecture, epochs, crop="", name="", session=None, request: gr.Request = None,
              progress=gr.Progress()):
        """Train a detector on the uploaded normal images; it joins this visitor's models."""
        progress(0, desc="reading the images")
        images, _ = self._training_set(files, architecture)
        key, session = self.sessions.get_or_new(session)  # a key naming no live session: a new one
        name = (name or "").strip() or f"my-{architecture}-{len(session['models']) + 1}"
        if name in self.zoo.models:
            raise InputError(f"'{name}' is a shipped model's name; choose another")
        out, ui = model_folder(session, name), self.page.train
        source = Path(session["folder"]) / f"{name}-images.npy"  # read once: training reads this
        np.save(source, images)
        cfg = train_config(arch=architecture, data=str(source), out=str(out), crop=crop or None,
                           epochs=int(epochs) if epochs else None, command=f"the app's Train tab ({name})")
        history, stop_key = [], request.session_hash if request else None
        self.stop_requests.discard(stop_key)
        for record in training_epochs(cfg, stop=lambda: stop_key in self.stop_requests):
            history.append(record)
            progress(record["epoch"] / record["epochs"], desc=f"epoch {record['epoch']}/{record['epochs']}")
            yield {ui.status: f"Epoch {record['epoch']} of {record['epochs']}: held-out loss "
                   f"{record['held_out_loss']:.4f}, {record['seconds']:.0f} s", ui.loss: render.loss_figure(history)}
        self.stop_requests.discard(stop_key)
        session["models"][name] = str(out)
        yield {ui.trained_name: name, ui.status: texts.ready(name, len(history), history[-1]["epochs"]),
               ui.loss: render.loss_figure(history),
               ui.card: texts.card(self.loaded.get(str(out)), out, len(images)), self.page.session: key,
               ui.download: str(checkpoint.to_zip(out, Path(session["folder"]) / f"{name}.zip")),
               **self._menus(key, chosen=name)}

    def stop_training(self, request: gr.Request):
        """The Stop button: the run ends after the epoch it is in, keeping that epoch's model."""
        self.stop_requests.add(request.session_hash)
        return "Stopping after this epoch..."

    @user_errors
    def push(self, name, repo_id, token, session=None):
        """Upload one of this visitor's models; the token is used for this call only, never kept."""
        own = self._own(session)
        if name not in own:
            raise InputError("train a model first: only this session's models can be pushed from here")
        url = checkpoint.push(own[name], (repo_id or "").strip(), token=token or None)
        return f"Pushed **{name}** to the Hub: {url}"
