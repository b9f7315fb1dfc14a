"""The app's callbacks: plain functions of the zoo and the user's inputs; user errors become gr.Error."""

import functools
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from ad.data import load_test_set, open_image
from ad.errors import InputError
from ad.evaluation import auc_by_source, rank_average, roc_points, write_submission
from ad.scoring import anomaly_scores, detect, verdict
from ad.ui import render

MAX_LATENT_SLIDERS = 16

try:  # ZeroGPU Spaces lend a GPU per call to functions wrapped with spaces.GPU
    import spaces
    on_gpu = spaces.GPU
except ImportError:
    def on_gpu(function):
        return function


def user_errors(function):
    """Show a user's mistake as a message in the UI instead of a generic 'Error'."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except InputError as e:
            raise gr.Error(str(e), title="Cannot use this input") from None
    return wrapper


def _image(path):
    if not path:
        raise InputError("no image yet: drop, upload or paste one first")
    return open_image(path, name=Path(path).name)


class Handlers:
    def __init__(self, zoo, sample_testset=None):
        self.zoo = zoo
        self.sample_testset = sample_testset  # a folder in HW8's layout with labels, or None

    # ---------------------------------------------------------------- detect

    @user_errors
    @on_gpu
    def detect(self, image_path, model_name, threshold_percentile=99.0):
        """One image, one model: what it saw, its own picture, where the score comes from, how much."""
        model = self.zoo.get(model_name)
        detection = detect(model, _image(image_path))
        details = {"model": model_name, "score": detection.score, "percentile": detection.percentile,
                   "threshold_percentile": float(threshold_percentile),
                   "threshold_score": model.threshold(threshold_percentile),
                   "verdict": detection.verdict(threshold_percentile)}
        return (*render.pictures(detection), self._summary(model, details), details)

    @user_errors
    def model_labels(self, model_name):
        """The pictures' titles and the legend come from the model on screen."""
        model = self.zoo.get(model_name)
        return (gr.Image(label=model.picture_label), gr.Image(label=f"Heat map. {model.heat_title}"),
                render.legend(model))

    @staticmethod
    def _summary(model, d):
        return (f"### {d['verdict'].upper()}\n"
                f"Anomaly score **{d['score']:.4g}**: more anomalous than **{d['percentile']:.1f}%** "
                f"of held-out normal images.  \nThreshold: the {d['threshold_percentile']:g}th percentile "
                f"of normal scores (score {d['threshold_score']:.4g}).  \n"
                f"<small>Score: {model.score_description}. Heat map: {model.heat_title.lower()}, in "
                f"{model.heat_unit}.</small>")

    # ---------------------------------------------------------------- compare

    @user_errors
    @on_gpu
    def compare(self, image_path, threshold_percentile=99.0):
        """One image, every model: their pictures and heat maps, a table, and an ensemble."""
        if not self.zoo.models:
            raise InputError("no model could be loaded; see the notes at the top of the page")
        image = _image(image_path)
        gallery, rows, percentiles = [], [], []
        for name, model in self.zoo.models.items():
            detection = detect(model, image)
            captions = ["input", model.picture_label.lower(), "heat map", "overlay"]
            gallery += [(picture, f"{name}: {caption}")
                        for picture, caption in zip(render.pictures(detection), captions)]
            percentiles.append(detection.percentile)
            rows.append([name, round(detection.score, 4), round(detection.percentile, 2),
                         detection.verdict(threshold_percentile)])
        mean = float(np.mean(percentiles))
        rows.append(["ensemble (mean percentile)", None, round(mean, 2),
                     verdict(mean, threshold_percentile)])
        return gallery, rows

    # ---------------------------------------------------------------- evaluate

    @user_errors
    @on_gpu
    def evaluate(self, dataset, images_file, labels_file, sources_file, model_names,
                 progress=gr.Progress()):
        """ROC-AUC (overall and per source), ROC curves, histograms and submission CSVs."""
        if not model_names:
            raise InputError("pick at least one model to evaluate")
        test_set = self._test_set(dataset, images_file, labels_file, sources_file)
        labels, sources = test_set.labels, test_set.sources
        scores, table, curves = {}, [], {}
        for i, name in enumerate(model_names):
            model = self.zoo.get(name)
            scores[name] = anomaly_scores(
                model, test_set.images, progress=lambda f, i=i, name=name: progress(
                    (i + f) / len(model_names), desc=f"scoring with {name}"))
        if len(scores) > 1:
            scores["ensemble (rank mean)"] = rank_average(list(scores.values()))
        output_dir = Path(tempfile.mkdtemp(prefix="ad-evaluate-"))  # per request: users never collide
        files = []
        for name, values in scores.items():
            auc = auc_by_source(labels, values, sources)
            table.append([name] + [round(auc[k], 4) for k in auc])
            curves[name] = (*roc_points(labels, values), auc["overall"])
            path = output_dir / f"submission_{name.split(' ')[0]}.csv"
            write_submission(path, values)
            files.append(str(path))
        headers = ["model", "overall"] + [f"normal vs {k}" for k in auc if k != "overall"]
        return (gr.Dataframe(value=table, headers=headers), render.roc_figure(curves),
                render.histogram_figure(scores, labels), files)

    def _test_set(self, dataset, images_file, labels_file, sources_file):
        if dataset == "bundled sample":
            if self.sample_testset is None:
                raise InputError("this app has no bundled sample test set; upload one")
            folder = Path(self.sample_testset)
            images_file, labels_file, sources_file = (
                folder / "testingset.npy", folder / "testing_labels.npy", folder / "testing_sources.npy")
        if not images_file or not labels_file:
            raise InputError("upload the test images (.npy or .zip) and their labels (.npy or .csv)")
        return load_test_set(images_file, labels_file, sources_file)

    # ---------------------------------------------------------------- latent space

    @user_errors
    def encode(self, image_path, model_name):
        """Encode an image; the first latent dimensions become sliders."""
        model = self.zoo.get(model_name)
        x = model.preprocess(_image(image_path)[None])
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

    @user_errors
    def decode(self, state, *values):
        if not state:
            raise InputError("encode an image first")
        model = self.zoo.get(state["model"])
        code = np.array(state["code"], dtype=np.float32)
        code[:min(len(code), len(values))] = values[:len(code)]
        return self._decode(model, code)

    @staticmethod
    def _decode(model, code):
        with torch.inference_mode():
            decoded = model.decode(torch.as_tensor(code, dtype=torch.float32, device=model.device)[None])
        return render.model_view(decoded[0])
