"""The model card (a checkpoint's README.md): YAML metadata the Hub reads, then what a user needs."""

import json
from pathlib import Path

from ad.data import FITS
from ad.models.base import CALIBRATION_POINTS


def metric_titles():
    """{metric key: its title}, from ad.evaluation's table (imported here: it loads scikit-learn)."""
    from ad.evaluation import METRICS
    return {key: metric.title for key, metric in METRICS.items()}


def eval_results(metrics, training=None):
    """The test metrics as the Hub's model-index: one result per metric and kind of image, by name."""
    from huggingface_hub import EvalResult

    test = Path(str((training or {}).get("config", {}).get("test") or "test set"))
    dataset = test.parent.name or test.stem  # HW8's layout: the folder names the data set
    return [EvalResult(task_type="image-classification", task_name="Anomaly detection (trained on normal images)",
                       dataset_type=dataset, dataset_name=f"{dataset} ({metrics.get('test_images', '?')} test images)",
                       dataset_split="test", dataset_config=subset, metric_type=key,
                       metric_name=f"{title} ({'all' if subset == 'overall' else 'normal vs ' + subset})",
                       metric_value=round(float(value), 4))
            for key, title in metric_titles().items() if key in metrics
            for subset, value in sorted(metrics[key].items(), key=lambda kv: (kv[0] != "overall", kv[0]))]


def model_card(model, metrics=None, training=None):
    from huggingface_hub import ModelCard, ModelCardData

    info = model._hub_mixin_info.model_card_data
    # No Hub task is "anomaly detection": a detector answers normal or anomalous for an image, which
    # is image classification with two classes. No Hub dataset is named: the training images are
    # the user's, named in the card's text.
    data = ModelCardData(library_name=info.library_name, license=info.license,
                         tags=sorted(set(info.tags or []) | {model.architecture}),
                         pipeline_tag="image-classification", model_name=f"{model.architecture} anomaly detector",
                         metrics=[key for key in metric_titles() if key in metrics] if metrics else None,
                         eval_results=eval_results(metrics, training) if metrics else None)
    lines = [f"# `{model.architecture}` anomaly detector", "",
             f"{model.summary} Trained on normal images only; of any RGB picture it reads {model.sees()}. "
             f"Score: {model.score_description}; higher means more anomalous.", "",
             f"- architecture: `{model.architecture}`, {model.parameter_count():,} parameters",
             f"- configuration: `{json.dumps(model.options)}`",
             f"- input format: `image_size` {model.image_size}, `fit` `{model.fit}` ({FITS[model.fit]}); "
             f"crop box (top, left, height, width) on that square: `{model.crop}`"]
    if training:
        run = training.get("config", {})
        history = training.get("history") or [{}]
        lines += [f"- trained on `{Path(str(run.get('data', '?'))).name}` for "
                  f"{training.get('epochs_done')} epochs "
                  f"({history[-1].get('seconds', '?')} s); held-out normal share {run.get('holdout')}"]
        if run.get("command"):
            lines += ["", "Training command:", "", "```", run["command"], "```"]
    lines += ["", "## Calibration", "",
              f"{CALIBRATION_POINTS} quantiles of held-out normal images' scores are stored in the "
              "weights (`normal_score_quantiles`), so a score reads as a percentile of normal images; "
              f"the default verdict threshold is the 99th percentile ({model.threshold(99):.4g})."]
    if metrics:
        columns = [(key, title) for key, title in metric_titles().items() if key in metrics]
        lines += ["", f"## Test results ({metrics.get('test_images', '?')} images)", "",
                  "| subset | " + " | ".join(title for _, title in columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        lines += [f"| {'all' if subset == 'overall' else 'normal vs ' + subset} | "
                  + " | ".join(f"{metrics[key].get(subset, float('nan')):.4f}" for key, _ in columns) + " |"
                  for subset in sorted(metrics["roc_auc"], key=lambda k: (k != "overall", k))]
    side = model.image_size
    lines += ["", "## Use", "", "```python", "from ad import load_model", "from ad.data import load_images",
              "from ad.scoring import anomaly_scores",
              "model = load_model('THIS_FOLDER_OR_HUB_ID')  # strict, safetensors only",
              f"images, names = load_images('PICTURES', **model.input_format)  # uint8 (N, {side}, {side}, 3)",
              "scores = anomaly_scores(model, images)", "```", ""]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))
