"""ad.checkpoint: the one owner of the folder; every way to load is strict, calibration is required."""

import json
import shutil
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ad import InputError, checkpoint, create_model, list_models, load_model
from ad.cli import main
from ad.data import CENTRE, IMAGE_SIZE, WHOLE, standardize_images
from ad.models.fcn import FullyConnectedAutoencoder
from ad.scoring import anomaly_scores, calibrate, remember
from conftest import ROOT, small


def calibrated(arch, normal_images, **config):
    model = create_model(arch, **{**small(arch), **config}).eval()
    for learned in (False, True):  # every memory filled, as training fills them
        remember(model, normal_images[50:], learned=learned)
    calibrate(model, normal_images[:50])  # a duo's members too
    return model


def saved_as_written_in(model, folder, written_in, *keys):
    """Save `model`, its config.json as config format `written_in` wrote it: without `keys` (a
    member's option as "geo.memory_size"), which that format did not state. Returns the folder."""
    checkpoint.save(model, folder)
    config = json.loads((folder / "config.json").read_text())
    for key in keys:
        *members, name = key.split(".")
        options = config
        for member in members:
            options = options[member]
        del options[name]
    (folder / "config.json").write_text(json.dumps({**config, "format": written_in}))
    return folder


@pytest.mark.parametrize("arch", list_models())
def test_save_then_load_gives_identical_outputs(arch, tmp_path, normal_images):
    crop = None if arch == "duo" else (8, 8, 48, 48)  # duo reads whole pictures
    model = calibrated(arch, normal_images, crop=crop)
    checkpoint.save(model, tmp_path / arch, training={"epochs_done": 0}, metrics={"roc_auc": {"overall": 0.5}})
    loaded = load_model(tmp_path / arch)
    assert loaded.config == json.loads(json.dumps(model.config)) and loaded.crop == crop
    assert loaded.metrics == {"roc_auc": {"overall": 0.5}} and loaded.training_record == {"epochs_done": 0}
    x = model.preprocess(normal_images[:4])
    with torch.no_grad():
        assert torch.equal(model.score(x), loaded.score(x))
    assert loaded.percentile(model.threshold(50)) == pytest.approx(50, abs=0.5)


def test_the_folder_holds_its_files_and_nothing_half_written(tmp_path, normal_images):
    model = calibrated("fcn", normal_images)
    checkpoint.save(model, tmp_path / "fcn", training={"epochs_done": 1})
    checkpoint.save(model, tmp_path / "fcn", training={"epochs_done": 2})  # replaces file by file
    assert sorted(p.name for p in (tmp_path / "fcn").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "training.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["fcn"]  # no staging folder left beside it
    assert checkpoint.read_training(tmp_path / "fcn") == {"epochs_done": 2}


@pytest.fixture
def fcn_folder(tmp_path, normal_images):
    checkpoint.save(calibrated("fcn", normal_images), tmp_path / "fcn")
    return tmp_path / "fcn"


def load_every_way(folder):
    """The library's loader, the Hub mixin's public classmethod on the base and the model class."""
    from ad.models import Detector
    for load in (load_model, Detector.from_pretrained, FullyConnectedAutoencoder.from_pretrained):
        yield load.__qualname__, lambda load=load: load(folder)


def test_missing_tensors_are_refused_by_every_way_to_load(fcn_folder):
    state = {k: v.contiguous() for k, v in load_model(fcn_folder).state_dict().items() if "decoder" not in k}
    save_file(state, str(fcn_folder / "model.safetensors"))
    for name, load in load_every_way(fcn_folder):
        with pytest.raises(InputError, match="Missing key"):
            load()


def test_weights_of_another_shape_are_refused(fcn_folder):
    config = json.loads((fcn_folder / "config.json").read_text())
    (fcn_folder / "config.json").write_text(json.dumps({**config, "latent_dim": 9}))
    with pytest.raises(InputError, match="do not match"):
        load_model(fcn_folder)


def test_a_model_class_does_not_load_another_architecture(fcn_folder):
    from ad.models.geo import TransformPredictor
    with pytest.raises(InputError, match="holds a 'fcn' model, not a TransformPredictor"):
        TransformPredictor.from_pretrained(fcn_folder)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 100), "not a readable safetensors"),
    (lambda d: (d / "config.json").write_text('{"architecture": "gan"}'), "unknown architecture 'gan'"),
    (lambda d: (d / "config.json").write_text('{"architecture": "fcn", "fit": "stretch"}'), "fit 'stretch'"),
])
def test_damaged_checkpoints_are_refused_with_reasons(fcn_folder, damage, message):
    damage(fcn_folder)
    for name, load in load_every_way(fcn_folder):
        with pytest.raises(InputError, match=message):
            load()


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "config.json").write_text("{not json"), "config.json: not valid JSON"),
    (lambda d: (d / "metrics.json").write_text("{half"), "metrics.json: not valid JSON"),
    (lambda d: (d / "training.json").write_text("[1, 2]"), "training.json: expected a JSON object"),
])
def test_damaged_json_is_refused_with_reasons(fcn_folder, damage, message):
    """The Hub mixin's public from_pretrained reads config.json itself (a bare json error) and knows
    nothing of the record (metrics.json, training.json): only the library's loader checks those."""
    damage(fcn_folder)
    with pytest.raises(InputError, match=message):
        load_model(fcn_folder)
    if "config" in message:
        with pytest.raises(ValueError):
            FullyConnectedAutoencoder.from_pretrained(fcn_folder)
    else:
        assert FullyConnectedAutoencoder.from_pretrained(fcn_folder).metrics == {}


def test_an_uncalibrated_checkpoint_is_refused_until_calibrated(tmp_path, normal_images, capsys):
    model = create_model("fcn", **small("fcn"))
    with pytest.raises(InputError, match="not calibrated"):
        checkpoint.save(model, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    with pytest.raises(InputError, match="not calibrated"):
        model.threshold(99)
    with pytest.raises(InputError, match="not calibrated"):
        model.percentile(1.0)

    folder = tmp_path / "hand-made"  # as a Hub model or a hand-written folder may come
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(model.config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    for name, load in load_every_way(folder):
        with pytest.raises(InputError, match="no calibration.*python -m ad calibrate"):
            load()

    np.save(tmp_path / "normal.npy", normal_images[:60])
    main(["calibrate", "--checkpoint", str(folder), "--images", str(tmp_path / "normal.npy")])
    assert "calibrated" in capsys.readouterr().out
    mended = load_model(folder)
    assert mended.percentile(anomaly_scores(mended, normal_images[:60])).mean() == pytest.approx(50, abs=3)


@pytest.mark.parametrize("name", ["checkpoints/fnc", "./fnc", "~/fnc", "/nowhere/fnc", "fnc.zip"])
def test_a_mistyped_path_is_no_such_folder_and_never_sent_to_the_hub(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()  # `checkpoints/fnc`: its first part is a folder here
    monkeypatch.setattr("ad.hub.download", lambda *a, **k: pytest.fail(f"{name} was sent to the Hub"))
    with pytest.raises(InputError, match=f"{name}: no such checkpoint folder"):
        load_model(name)


def test_a_checkpoint_without_an_input_format_reads_as_hw8s(fcn_folder, normal_images):
    """Checkpoints written before image_size and fit existed: 64x64, the centre square."""
    config = json.loads((fcn_folder / "config.json").read_text())
    del config["image_size"], config["fit"]
    (fcn_folder / "config.json").write_text(json.dumps(config))
    model = load_model(fcn_folder)
    assert model.input_format == {"size": IMAGE_SIZE, "fit": CENTRE} and model.image_size == IMAGE_SIZE


@pytest.mark.parametrize("arch", ["seg", "duo"])
def test_a_segmenter_written_before_padding_was_an_option_loads_padded_by_zeros(arch, tmp_path, normal_images):
    """Config format 1 stated no padding: those U-Nets were trained padded by zeros, read them so
    (and a duo of then had no patch memory)."""
    zeros = {"padding": "zeros"} if arch == "seg" else {"seg": {**small("seg"), "padding": "zeros"}, "patch": False}
    model = calibrated(arch, normal_images, **zeros)
    checkpoint.save(model, tmp_path / arch)
    config = json.loads((tmp_path / arch / "config.json").read_text())
    assert config.pop("format") == 5 and config.pop("patch", False) is False
    del (config if arch == "seg" else config["seg"])["padding"]
    (tmp_path / arch / "config.json").write_text(json.dumps(config))
    x = model.preprocess(normal_images[:4])
    for loaded in (load_model(tmp_path / arch), type(model).from_pretrained(str(tmp_path / arch))):
        with torch.no_grad():
            assert torch.equal(loaded.score(x), model.score(x))
    new = create_model(arch, **small(arch))
    assert (new if arch == "seg" else new.seg).net.down[0][0].padding_mode == "reflect"  # the default now


def test_a_duo_written_before_the_patch_memory_loads_without_one_and_shows_segs_map(tmp_path, normal_images):
    model = calibrated("duo", normal_images, patch=False)
    loaded = load_model(saved_as_written_in(model, tmp_path / "duo", 2, "patch"))
    assert loaded.patch is None and loaded.members == [loaded.geo, loaded.seg] and loaded.heat_full_scale == 1.0
    x = model.preprocess(normal_images[:4])
    torch.testing.assert_close(loaded.explain(x).pixels, loaded.seg.explain(x).pixels)
    assert create_model("duo", **small("duo")).patch is not None  # the default now


def test_a_geo_written_before_its_memory_loads_without_one_and_scores_as_it_did(tmp_path, normal_images):
    """The shipped face checkpoint is one: config format 1, no memory_size, no memory in its weights."""
    model = calibrated("geo", normal_images, memory_size=0)
    loaded = load_model(saved_as_written_in(model, tmp_path / "geo", 3, "memory_size"))
    assert loaded.memory_size == 0 and not loaded.remembers
    x = model.preprocess(normal_images[:4])
    with torch.no_grad():
        assert torch.equal(loaded.score(x), model.score(x))
    assert load_model(ROOT / "checkpoints" / "geo").memory_size == 0
    assert create_model("geo").memory_size == 2048  # the default now


def test_a_geo_written_before_its_surface_memory_loads_without_one_and_shows_its_gradient(tmp_path, normal_images):
    model = calibrated("geo", normal_images, surface=None)
    loaded = load_model(saved_as_written_in(model, tmp_path / "geo", 4, "surface"))
    assert loaded.surface is None and loaded.members == [] and loaded.heat_unit.startswith("input gradient")
    x = model.preprocess(normal_images[:4])
    torch.testing.assert_close(loaded.explain(x).pixels, model.explain(x).pixels)
    assert load_model(ROOT / "checkpoints" / "geo").surface is None  # the shipped face checkpoint
    new = create_model("geo")
    assert new.surface is not None and new.members == [new.surface]  # the default now


def test_a_duo_written_before_format_5_loads_with_its_geo_scoring_by_cross_entropies(tmp_path, normal_images):
    geo = {k: v for k, v in small("geo").items() if k not in ("memory_size", "surface")}
    model = calibrated("duo", normal_images, geo={**geo, "memory_size": 0})
    loaded = load_model(saved_as_written_in(model, tmp_path / "duo", 4, "geo.memory_size"))
    assert loaded.geo.memory_size == 0 and loaded.geo.surface is None
    x = model.preprocess(normal_images[:4])
    with torch.no_grad():
        assert torch.equal(loaded.score(x), model.score(x))
    new = create_model("duo")
    assert new.geo.memory_size == 2048 and new.geo.surface is None  # the default now: its memory, no surface


def test_a_config_of_a_newer_format_is_refused_naming_the_file(fcn_folder):
    config = json.loads((fcn_folder / "config.json").read_text())
    (fcn_folder / "config.json").write_text(json.dumps({**config, "format": 99}))
    with pytest.raises(InputError, match=r"config.json: config format 99; expected 1 to 5"):
        load_model(fcn_folder)


def test_the_input_format_travels_with_the_checkpoint(tmp_path, normal_images):
    images = standardize_images(normal_images[:60], size=32, fit=WHOLE)
    model = create_model("fcn", **small("fcn"), image_size=32, fit=WHOLE, crop=[0, 0, 32, 16])
    model.calibrate(anomaly_scores(model, images))
    checkpoint.save(model, tmp_path / "fcn")
    loaded = load_model(tmp_path / "fcn")
    assert loaded.input_format == {"size": 32, "fit": WHOLE} and loaded.crop == (0, 0, 32, 16)
    card = (tmp_path / "fcn" / "README.md").read_text()
    assert "the whole picture, resized to 32x32 (its aspect ratio not kept)" in card
    assert "uint8 (N, 32, 32, 3)" in card and "**model.input_format" in card
    with pytest.raises(InputError, match=r"expected \(N, 32, 32, 3\)"):
        anomaly_scores(loaded, normal_images[:2])  # 64x64 arrays are not what it reads


def test_find_lists_checkpoint_folders_in_registry_order(tmp_path, fcn_folder):
    for name in ("geo", "zzz", ".hidden"):
        shutil.copytree(fcn_folder, tmp_path / name)
    assert list(checkpoint.find(tmp_path)) == ["fcn", "geo", "zzz"]


def test_the_zip_the_app_downloads_loads_as_it_is(fcn_folder, tmp_path, normal_images, capsys):
    (fcn_folder / "training_state.safetensors").write_bytes(b"resume state stays home")
    path = checkpoint.to_zip(fcn_folder, tmp_path / "fcn.zip")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["fcn/README.md", "fcn/config.json", "fcn/model.safetensors"]
    x = normal_images[:4]
    assert anomaly_scores(load_model(path), x) == pytest.approx(anomaly_scores(load_model(fcn_folder), x))
    np.save(tmp_path / "x.npy", x)
    main(["score", "--checkpoint", str(path), "--images", str(tmp_path / "x.npy"), "--out", str(tmp_path / "s.csv")])
    assert "wrote 4 scores" in capsys.readouterr().out
    (tmp_path / "junk.zip").write_bytes(b"PK not really")
    with pytest.raises(InputError, match="not a readable zip of a checkpoint"):
        load_model(tmp_path / "junk.zip")
