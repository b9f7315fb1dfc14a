"""ad.hub and ad.checkpoint.push against a Hub stand-in on 127.0.0.1: push, pull by id, offline, cards."""

import hashlib
import os
import subprocess
import sys

import pytest
import torch

from ad import InputError, checkpoint, load_model
from ad.cli import main
from ad.models import Detector
from ad.ui.zoo import load_zoo
from conftest import HUB_PORT, ROOT
from hub_server import VALID_TOKEN, FakeHub


@pytest.fixture(scope="module")
def hub():
    server = FakeHub(HUB_PORT)  # HF_ENDPOINT points here (conftest.py)
    yield server
    server.close()


@pytest.fixture(scope="module")
def pushed(hub, trained):
    """A trained checkpoint folder and the repo id it was pushed to."""
    folder = trained("fcn")
    checkpoint.push(folder, "user/hw8-fcn", token=VALID_TOKEN)
    return folder, "user/hw8-fcn"


def run_cli(*args, token=None, offline=False):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    env["OMP_NUM_THREADS"] = "1"
    if token:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def folder_digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_pushed_model_pulls_by_id_and_gives_identical_outputs(pushed, hub, normal_images):
    folder, repo = pushed
    files = hub.repos[repo]["branches"]["main"]["files"]
    assert {"config.json", "model.safetensors", "README.md", "training.json", "metrics.json"} <= set(files)
    local, remote, mixin = load_model(folder), load_model(repo), Detector.from_pretrained(repo)
    x = local.preprocess(normal_images[:8])
    with torch.no_grad():
        assert torch.equal(local(x), remote(x)) and torch.equal(local(x), mixin(x))
    assert torch.equal(local.normal_score_quantiles, remote.normal_score_quantiles)
    assert remote.metrics == local.metrics


def test_train_pushes_when_asked(hub, data_files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", VALID_TOKEN)
    main(["train", "--arch", "fcn", "--data", str(data_files / "trainingset.npy"), "--out", str(tmp_path / "fcn"),
          "--epochs", "1", "--batch-size", "32", "--set", "hidden=[64]", "--set", "latent_dim=8",
          "--push-to-hub", "user/trained-and-pushed", "--revision", "v1"])
    assert "model.safetensors" in hub.repos["user/trained-and-pushed"]["branches"]["v1"]["files"]


def test_a_folder_that_would_not_load_is_never_pushed(hub, tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text('{"architecture": "fcn"}')
    with pytest.raises(InputError, match="no model.safetensors"):
        checkpoint.push(tmp_path / "half", "user/half", token=VALID_TOKEN)
    assert "user/half" not in hub.repos


def test_a_push_with_a_bad_token_fails_cleanly_and_keeps_the_checkpoint(pushed, hub):
    folder, _ = pushed
    before = folder_digest(folder)
    result = run_cli("-m", "ad", "push", "--checkpoint", str(folder), "--repo", "user/other", token="hf_wrong")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "push to user/other failed" in result.stderr and "unchanged" in result.stderr
    assert folder_digest(folder) == before and "user/other" not in hub.repos


def test_a_missing_repo_is_reported(hub):
    with pytest.raises(InputError, match="no such model on the Hub"):
        load_model("user/does-not-exist")
    with pytest.raises(InputError, match="not a checkpoint folder here, nor a Hub model id"):
        load_model("not a repo id")


def test_a_cached_model_loads_offline(pushed, data_files):
    _, repo = pushed
    load_model(repo)  # in the cache now
    result = run_cli("-m", "ad", "score", "--checkpoint", repo, "--images",
                     str(data_files / "testingset.npy"), "--out", os.devnull, offline=True)
    assert result.returncode == 0, result.stderr[-2000:]
    missing = run_cli("-m", "ad", "score", "--checkpoint", "user/never-cached", "--images",
                      str(data_files / "testingset.npy"), "--out", os.devnull, offline=True)
    assert missing.returncode == 2 and "offline" in missing.stderr


def test_the_app_zoo_takes_hub_ids_and_reports_missing_ones(pushed):
    _, repo = pushed
    zoo = load_zoo({"local-fcn": str(ROOT / "checkpoints" / "fcn"), repo: repo, "user/gone": "user/gone"})
    assert set(zoo.models) == {"local-fcn", repo}
    assert "no such model" in zoo.errors["user/gone"]


def test_model_card_and_space_card_parse(pushed):
    from huggingface_hub import ModelCard, SpaceCard
    folder, _ = pushed
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "anomaly-detection-demo" and "fcn" in card.data.tags
    space = SpaceCard.load(ROOT / "README.md")
    assert space.data.sdk == "gradio" and space.data.app_file == "app.py"
    import gradio
    assert space.data.sdk_version == gradio.__version__
    assert f"gradio[mcp]=={gradio.__version__}" in (ROOT / "requirements.txt").read_text()


def test_the_app_pushes_a_visitors_model_and_never_echoes_the_token(pushed, hub):
    import gradio as gr
    from ad.ui.handlers import Handlers
    from ad.ui.zoo import Zoo
    folder, _ = pushed
    handlers = Handlers(Zoo())
    session, own = handlers.sessions.new()  # the visitor's key, and what it names
    own["models"]["mine"] = str(folder)
    answer = handlers.push("mine", "user/from-the-app", VALID_TOKEN, session)
    assert "user/from-the-app" in answer and VALID_TOKEN not in answer
    assert "model.safetensors" in hub.repos["user/from-the-app"]["branches"]["main"]["files"]
    with pytest.raises(gr.Error, match="push to user/refused failed") as refused:
        handlers.push("mine", "user/refused", "hf_wrong_secret", session)
    assert "hf_wrong_secret" not in str(refused.value) and folder.is_dir()


def test_all_defaults_push_load_back_by_id_and_their_cards_carry_the_results(hub, monkeypatch, capsys):
    from huggingface_hub import ModelCard

    sys.path.insert(0, str(ROOT / "scripts"))
    import push_defaults
    monkeypatch.setenv("HF_TOKEN", VALID_TOKEN)
    repos = push_defaults.main(["space-owner"])
    out = capsys.readouterr().out
    assert f"AD_MODELS={','.join(repos)}" in out and "models:\n- space-owner/hw8-fcn" in out
    assert load_zoo({repo: repo for repo in repos}).errors == {}  # the Space loads every one by id
    for repo in repos:
        shipped = ROOT / "checkpoints" / repo.removeprefix("space-owner/hw8-")
        card = ModelCard(hub.repos[repo]["branches"]["main"]["files"]["README.md"].decode())  # as pushed
        results = {(r.metric_type, r.dataset_config): r.metric_value for r in card.data.eval_results}
        metrics = load_model(shipped).metrics
        assert results[("roc_auc", "overall")] == round(metrics["roc_auc"]["overall"], 4)
        assert results[("roc_auc", "UTKFace")] == round(metrics["roc_auc"]["UTKFace"], 4)  # kinds by name
        assert card.data.pipeline_tag == "image-classification" and card.data.model_name


def test_the_mixins_own_push_and_pull_keep_token_revision_and_cache_dir(pushed, hub, tmp_path, normal_images):
    folder, _ = pushed
    model = load_model(folder)
    model.push_to_hub("user/mixin-pushed", token=VALID_TOKEN)  # the mixin's public method
    assert "model.safetensors" in hub.repos["user/mixin-pushed"]["branches"]["main"]["files"]
    pulled = Detector.from_pretrained("user/mixin-pushed", revision="main", cache_dir=tmp_path / "cache",
                                      token=VALID_TOKEN)
    assert list((tmp_path / "cache").rglob("model.safetensors"))  # downloaded where it was told
    x = model.preprocess(normal_images[:4])
    with torch.no_grad():
        assert torch.equal(model(x), pulled(x)) and pulled.config == model.config
    offline = Detector.from_pretrained("user/mixin-pushed", revision="main", cache_dir=tmp_path / "cache",
                                       local_files_only=True)
    assert torch.equal(offline.normal_score_quantiles, model.normal_score_quantiles)
