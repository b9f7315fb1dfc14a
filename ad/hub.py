"""Hugging Face Hub: model cards, pushing a checkpoint folder, pulling one by model id."""

import json
import re
import sys
from pathlib import Path

from ad.data import InputError

HUB_FILES = ["config.json", "model.safetensors", "metrics.json", "training.json", "README.md"]
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def model_card(model, metrics=None, training=None):
    """README.md for a checkpoint folder: YAML metadata the Hub reads, then what a user needs."""
    from huggingface_hub import ModelCard, ModelCardData

    info = model._hub_mixin_info.model_card_data
    data = ModelCardData(library_name=info.library_name, license=info.license,
                         tags=sorted(set(info.tags or []) | {model.architecture}),
                         pipeline_tag="image-classification",
                         metrics=["roc_auc"] if metrics else None)
    config = model.config
    lines = [f"# `{model.architecture}` anomaly detector", "",
             f"{sys.modules[type(model).__module__].__doc__.strip().splitlines()[0]} Trained on "
             f"normal images only (HW8 layout: 64x64 RGB). Score: {model.score_description}; higher "
             "means more anomalous.", "",
             f"- architecture: `{model.architecture}`, {model.parameter_count():,} parameters",
             f"- configuration: `{json.dumps({k: v for k, v in config.items() if k != 'architecture'})}`",
             f"- crop box (top, left, height, width) applied before the model: `{model.crop}`"]
    if training:
        run = training.get("config", {})
        history = training.get("history") or [{}]
        lines += [f"- trained on `{Path(str(run.get('data', '?'))).name}` for "
                  f"{training.get('epochs_done')} epochs "
                  f"({history[-1].get('seconds', '?')} s); held-out normal share {run.get('holdout')}"]
        if run.get("command"):
            lines += ["", "Training command:", "", "```", run["command"], "```"]
    lines += ["", "## Calibration", "",
              "The quantiles of held-out normal images' scores are stored in the weights "
              "(`normal_score_quantiles`), so a score reads as a percentile of normal images; the "
              f"default verdict threshold is the 99th percentile ({model.threshold(99):.4g})."]
    if metrics:
        lines += ["", "## ROC-AUC", "", "| subset | ROC-AUC |", "|---|---|"]
        lines += [f"| {'all' if k == 'overall' else 'normal vs source ' + k} | {v:.4f} |"
                  for k, v in metrics["roc_auc"].items()]
    lines += ["", "## Use", "", "```python", "from ad import load_model",
              "from ad.scoring import anomaly_scores",
              "model = load_model('THIS_FOLDER_OR_HUB_ID')  # strict, safetensors only",
              "scores = anomaly_scores(model, images)  # images: uint8 (N, 64, 64, 3)", "```", ""]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def check_repo_id(repo_id):
    if not REPO_ID.match(repo_id):
        raise InputError(f"'{repo_id}': not a checkpoint folder here, nor a Hub model id of the "
                         "form USER/NAME")


def download(repo_id, revision=None):
    """Fetch a checkpoint from the Hub (cached; works offline once cached) and return its folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    check_repo_id(repo_id)
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES))
    except RepositoryNotFoundError:
        raise InputError(f"{repo_id}: no such model on the Hub (or it is private and no token "
                         "was given)") from None
    except RevisionNotFoundError:
        raise InputError(f"{repo_id}: no revision '{revision}' on the Hub") from None
    except LocalEntryNotFoundError:
        raise InputError(f"{repo_id}: not in the local cache and the Hub cannot be reached "
                         "(offline?)") from None
    except (HfHubHTTPError, OSError) as e:
        raise InputError(f"{repo_id}: download failed ({_first_line(e)})") from None


def push(folder, repo_id, private=False, revision=None, token=None):
    """Upload a checkpoint folder; the local folder is only read, whatever happens."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    check_repo_id(repo_id)
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: no {name}; push a finished checkpoint folder")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                   allow_patterns=HUB_FILES,
                                   commit_message=f"Upload {folder.name} checkpoint")
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise InputError(f"push to {repo_id} failed ({_first_line(e)}); the local checkpoint "
                         f"{folder} is unchanged") from None
    return commit.commit_url if hasattr(commit, "commit_url") else str(commit)


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
