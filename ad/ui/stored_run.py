"""A stored evaluation run: one test set scored once by several models, read at any threshold (the Evaluate tab).

Everything here is computed from the stored scores, so moving the threshold never calls a model.
"""

import functools
import re
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ad.evaluation import (METRICS, at_threshold, best_f1_threshold, details_csv, errors_at, metrics_by_source,
                           precision_recall_points, rank_average, rank_correlations, roc_points,
                           submission_csv, test_metrics, verdicts_at)
from ad.errors import InputError
from ad.files import write_text
from ad.scoring import anomaly_scores, explain_all
from ad.ui.render import defect_picture, percent
from ad.ui.texts import plural

PERCENTILE, BEST_F1 = "percentile of normal scores", "best F1 on these labels"
GALLERY_SIZE = 24  # images per gallery, worst first
TABLE_ROWS = 1000  # the per-image table shows the most anomalous; the CSVs hold every image
EXPLAINED_AT_ONCE = 64  # images explained between two moves of the progress bar


@dataclass
class EvaluationRun:
    test_sets: dict  # name -> ad.data.TestSet read at that model's input format; labels may be None
    models: dict  # name -> calibrated model
    scores: dict  # name -> scores (N,)
    pixel_metrics: dict = field(default_factory=dict)  # name -> pixel metrics by kind, with defect masks
    defects: dict = field(default_factory=dict)  # name -> (index, pixel ROC-AUC, float16 map), worst found first
    percentiles: dict = field(init=False)  # name -> share of held-out normal images scoring lower
    metrics: dict = field(init=False)  # name -> metrics_by_source (and pixel_metrics), when labelled

    def __post_init__(self):
        self.percentiles = {name: np.asarray(self.models[name].percentile(s)) for name, s in self.scores.items()}
        self.metrics = ({name: metrics_by_source(self.test_set.labels, s, self.test_set.sources)
                         | self.pixel_metrics.get(name, {}) for name, s in self.scores.items()}
                        if self.labelled else {})

    @property
    def test_set(self):
        """The first model's test set: the labels, names and kinds, the same at every input format."""
        return next(iter(self.test_sets.values()))

    @property
    def has_masks(self):
        return bool(self.defects)

    def images(self, name):
        """The test images as the model `name` read them."""
        return self.test_sets[name].images

    @property
    def labelled(self):
        return self.test_set.labels is not None

    # ------------------------------------------------------------ independent of the threshold

    @functools.cached_property
    def ensemble(self):
        """(metrics, best single model) of the mean-rank ensemble when it beats every single model."""
        if not self.labelled or len(self.scores) < 2:
            return None
        metrics = metrics_by_source(self.test_set.labels, rank_average(list(self.scores.values())),
                                    self.test_set.sources)
        best = max(self.metrics, key=lambda name: self.metrics[name]["roc_auc"]["overall"])
        return (metrics, best) if metrics["roc_auc"]["overall"] > self.metrics[best]["roc_auc"]["overall"] else None

    def overview(self):
        count, labels = len(self.test_set.images), self.test_set.labels
        text = f"**{plural(count, 'image')}** scored by {plural(len(self.scores), 'model')}. "
        if not self.labelled:
            return text + ("No labels: the images are ranked by score and judged at the threshold below. "
                           "Add labels (or sub-folders good/ and one per kind of anomaly) for accuracy figures.")
        text += f"{int((labels == 0).sum()):,} normal, {int((labels == 1).sum()):,} anomalous"
        if self.test_set.sources is not None:
            kinds = pd.Series(self.test_set.sources[labels == 1]).value_counts()
            text += " (" + ", ".join(f"{name}: {n:,}" for name, n in kinds.items()) + ")"
        text += ".  \n" + self.agreement_sentence()
        return text

    def agreement_sentence(self):
        if len(self.scores) < 2:
            return ""
        names = list(self.scores)
        correlation = rank_correlations(self.scores)
        i, j = divmod(int(np.argmin(correlation + 2 * np.eye(len(names)))), len(names))
        text = (f"Model agreement (rank correlation of scores, 1 = they order the images the same): the least alike "
                f"are {names[i]} and {names[j]} ({correlation[i, j]:.2f}). Strong models that disagree are worth "
                "averaging; models that agree add little to each other. ")
        ensemble = self.ensemble
        if ensemble is None:
            return text + "Here the mean-rank ensemble of all of them does not beat the best single model."
        metrics, best = ensemble
        return text + (f"Here the mean-rank ensemble helps: ROC-AUC {metrics['roc_auc']['overall']:.4f}, above the "
                       f"best single model ({best}, {self.metrics[best]['roc_auc']['overall']:.4f}).")

    def ranking_table(self):
        """Per model (and the ensemble when it helps), overall and per kind of anomaly; the pixel
        metrics' columns only for a set with defect masks."""
        rows = dict(self.metrics)
        if (ensemble := self.ensemble) is not None:
            rows["ensemble (mean rank)"] = ensemble[0]
        keys = [key for key in METRICS if any(key in metrics for metrics in rows.values())]
        table = [[name, "all" if subset == "overall" else f"normal vs {subset}"]
                 + [_rounded(metrics.get(key, {}).get(subset)) for key in keys]
                 for name, metrics in rows.items() for subset in metrics["roc_auc"]]
        return pd.DataFrame(table, columns=["model", "images", *(METRICS[key].column for key in keys)])

    def curves(self):
        labels = self.test_set.labels
        return {name: (*roc_points(labels, s), self.metrics[name]["roc_auc"]["overall"],
                       *precision_recall_points(labels, s), self.metrics[name]["average_precision"]["overall"])
                for name, s in self.scores.items()}

    def agreement_table(self):
        correlation = rank_correlations(self.scores)
        return pd.DataFrame([[name, *np.round(row, 3)] for name, row in zip(self.scores, correlation)],
                            columns=["model", *self.scores])

    # ------------------------------------------------------------ at a threshold

    def thresholds(self, mode, percentile):
        """Each model's score threshold: a percentile of its held-out normal scores, or the labels' best F1."""
        if mode == BEST_F1:
            if not self.labelled:
                raise InputError("the best-F1 threshold needs labels; this test set has none")
            return {name: best_f1_threshold(self.test_set.labels, s)[0] for name, s in self.scores.items()}
        return {name: self.models[name].threshold(float(percentile)) for name in self.scores}

    def threshold_table(self, thresholds):
        rows = []
        for name, s in self.scores.items():
            flagged = int((s > thresholds[name]).sum())
            row = [name, round(thresholds[name], 5), flagged, round(100 * flagged / len(s), 2)]
            if self.labelled:
                m = at_threshold(self.test_set.labels, s, thresholds[name])
                row += [round(m[k], 4) for k in ("precision", "recall", "f1", "false_positive_rate")]
                row += [m[k] for k in ("true_positives", "false_positives", "true_negatives", "false_negatives")]
            rows.append(row)
        columns = ["model", "threshold score", "flagged", "flagged %"]
        if self.labelled:
            columns += ["precision", "recall", "F1", "false positive rate", "TP", "FP", "TN", "FN"]
        return pd.DataFrame(rows, columns=columns)

    def confusion_table(self, name, threshold):
        if not self.labelled:
            return pd.DataFrame()
        m = at_threshold(self.test_set.labels, self.scores[name], threshold)
        return pd.DataFrame([[f"normal ({name})", m["true_negatives"], m["false_positives"]],
                             [f"anomalous ({name})", m["false_negatives"], m["true_positives"]]],
                            columns=["actually", "called normal", "called anomalous"])

    def caption(self, name, index):
        shown = self.test_set.names[index]
        shown = f"#{shown}" if shown.isdigit() else shown
        kind = f", {self.test_set.sources[index]}" if self.test_set.sources is not None else ""
        score, percentile = self.scores[name][index], self.percentiles[name][index]
        return f"{shown}{kind}: score {score:.4g} (percentile {percent(percentile)})"

    def examples(self, name, threshold):
        """(index, caption) lists: the most anomalous images, then the false positives and false
        negatives at the threshold (worst first; empty without labels); and how many errors of each."""
        scores = self.scores[name]
        most = np.argsort(-scores, kind="stable")[:GALLERY_SIZE]
        errors = errors_at(self.test_set.labels, scores, threshold) if self.labelled else ([], [])
        shown = [[(int(i), self.caption(name, i)) for i in indices[:GALLERY_SIZE]] for indices in (most, *errors)]
        return shown, [len(indices) for indices in errors]

    def defect_pictures(self, name):
        """(picture, caption) per anomalous image shown: the model's heat map over it, the true
        defect outlined; the images whose defect stands out least from their other pixels first."""
        test_set, full_scale = self.test_sets[name], self.models[name].heat_full_scale
        shown = []
        for index, found, pixels in self.defects.get(name, []):
            kind = f", {self.test_set.sources[index]}" if self.test_set.sources is not None else ""
            caption = f"{self.test_set.names[index]}{kind}: pixel ROC-AUC {found:.3f}"
            shown.append((defect_picture(test_set.images[index], pixels, full_scale, test_set.masks[index]), caption))
        return shown

    def image_table(self, name, threshold):
        scores, order = self.scores[name], np.argsort(-self.scores[name], kind="stable")[:TABLE_ROWS]
        table = pd.DataFrame({"file": [self.test_set.names[i] for i in order], "score": scores[order].round(5),
                              "percentile": self.percentiles[name][order].round(2),
                              "verdict": verdicts_at(scores[order], threshold)})
        if self.labelled:
            table["label"] = np.where(self.test_set.labels[order] == 1, "anomalous", "normal")
        if self.test_set.sources is not None:
            table["source"] = self.test_set.sources[order]
        return table

    def write_files(self, thresholds, folder):
        """Per model: HW8's submission (ID,score) and every image's details at the threshold; and one zip
        of them all, first."""
        files = []
        for name, s in self.scores.items():
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
            files.append(write_text(folder / f"submission_{safe}.csv", submission_csv(s)))
            files.append(write_text(folder / f"scores_{safe}.csv", details_csv(
                self.test_set.names, s, self.percentiles[name], verdicts_at(s, thresholds[name]),
                self.test_set.labels, self.test_set.sources)))
        bundle = folder / "evaluation.zip"
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for path in files:
                archive.write(path, path.name)
        return [str(bundle)] + [str(path) for path in files]


def _rounded(value):
    return None if value is None else round(value, 4)


def score_models(models, test_sets, progress):
    """The run of every model on its test set (`test_sets`: name -> TestSet at its input format): the
    scores, and with defect masks the pixel metrics and the images whose defect it found least.
    `progress(fraction, desc=...)` as the scoring goes (the app's gr.Progress)."""
    scores, pixel_metrics, defects, started = {}, {}, {}, time.perf_counter()
    for i, (name, model) in enumerate(models.items()):
        test_set = test_sets[name]

        def report(fraction, i=i, name=name, count=len(test_set.images)):
            done = (i + fraction) / len(models)
            left = (time.perf_counter() - started) * (1 - done) / max(done, 1e-9)
            progress(done, desc=f"scoring {plural(count, 'image')} with {name} ({i + 1} of {len(models)}), "
                     f"about {left:.0f} s left")
        if test_set.masks is None or test_set.labels is None:
            scores[name] = anomaly_scores(model, test_set.images, progress=report)
            continue
        scores[name], maps = _explained(model, test_set.images, report)
        pixel_metrics[name] = {key: values for key, values in test_metrics(test_set, scores[name], maps).items()
                               if key in METRICS and METRICS[key].needs_masks}
        defects[name] = worst_found(test_set, maps)  # the rest of the maps goes: a run is kept in memory
    return EvaluationRun(test_sets, models, scores, pixel_metrics, defects)


def _explained(model, images, report):
    """(scores, pixel maps float32 (N, S, S)) of ad.scoring.explain_all, a few images at a time for the progress bar."""
    scores, maps = [], []
    for start in range(0, len(images), EXPLAINED_AT_ONCE):
        batch_scores, batch_maps, _ = explain_all(model, images[start:start + EXPLAINED_AT_ONCE])
        scores.append(batch_scores)
        maps.append(batch_maps)
        report(min(start + EXPLAINED_AT_ONCE, len(images)) / len(images))
    return np.concatenate(scores), np.concatenate(maps)


def worst_found(test_set, maps):
    """[(index, pixel ROC-AUC, map as float16)] of the GALLERY_SIZE anomalous images whose defect
    pixels stand out least from the image's other pixels, lowest first."""
    anomalous = np.flatnonzero(test_set.labels == 1)
    found = np.array([image_pixel_roc_auc(test_set.masks[i], maps[i]) for i in anomalous])
    order = np.argsort(found, kind="stable")[:GALLERY_SIZE]  # an image all defect (NaN) last
    return [(int(anomalous[j]), float(found[j]), maps[anomalous[j]].astype(np.float16)) for j in order]


def image_pixel_roc_auc(mask, pixels):
    """One image's pixel ROC-AUC: the chance that a defect pixel scores above a normal pixel of the
    same image (ties count half); 1 = the heat lies on the defect alone, 0.5 = anywhere. NaN when
    the mask marks all of it or nothing."""
    inside, ranks = np.asarray(mask).ravel(), rankdata(np.asarray(pixels, dtype=np.float32).ravel())
    defect, normal = int(inside.sum()), int((~inside).sum())
    if not defect or not normal:
        return float("nan")
    return float((ranks[inside].sum() - defect * (defect + 1) / 2) / (defect * normal))
