"""ad.models: every architecture learns, saves and loads exactly, and refuses mismatched checkpoints."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ad import InputError, create_model, list_models, load_model
from ad.models import Autoencoder
from conftest import TINY


def test_registry_lists_the_homework_architectures_first():
    assert list_models() == ["fcn", "cnn", "vae", "resnet", "multi", "geo"]
    assert set(TINY) == set(list_models())


def test_unknown_architecture_is_named_in_the_error():
    with pytest.raises(InputError, match="unknown architecture 'transformer'.*fcn, cnn"):
        create_model("transformer")


@pytest.mark.parametrize("arch", list_models())
def test_default_configuration_fits_the_size_budget(arch):
    model = create_model(arch).eval()
    assert model.score(torch.zeros(2, 3, 64, 64)).shape == (2,)
    assert model.parameter_count() * 4 < 15 * 1024**2  # checkpoint folder under 15 MB


@pytest.mark.parametrize("arch", ["fcn", "cnn", "vae", "resnet", "multi"])
def test_autoencoders_read_their_crop_at_the_input_size(arch, train_faces, tmp_path):
    model = create_model(arch, **TINY[arch], crop=(16, 16, 32, 32), input_size=32).eval()
    x = model.preprocess(train_faces[:3])
    assert x.shape == (3, 3, 32, 32)
    result = model.explain(x)
    assert result["picture"].shape == (3, 3, 32, 32) and result["heat"].shape == (3, 32, 32)
    model.save_pretrained(tmp_path, config=model.config)
    assert json.loads((tmp_path / "config.json").read_text())["input_size"] == 32
    assert torch.equal(load_model(tmp_path).score(x), model.score(x))


@pytest.mark.parametrize("size, message",
                         [(30, "multiple of 8"), (4, "from 8 to 256"), ("32", "from 8 to 256")])
def test_input_sizes_the_architecture_cannot_take_are_refused(size, message):
    with pytest.raises(InputError, match=message):
        create_model("cnn", **TINY["cnn"], input_size=size)


@pytest.mark.parametrize("arch", list_models())
def test_loss_falls_when_training_on_faces(arch, train_faces):
    torch.manual_seed(0)
    model = create_model(arch, **TINY[arch])
    held_out = model.preprocess(train_faces[:64])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def held_out_loss():
        model.eval()
        with torch.no_grad():
            torch.manual_seed(1)  # the VAE's loss samples
            return model.loss(held_out).item()

    before = held_out_loss()
    for step in range(80):
        x = model.preprocess(train_faces[64 + (step * 32) % 512:][:32])
        model.train()
        loss = model.loss(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert after < 0.8 * before, (before, after)
    if isinstance(model, Autoencoder):  # and clearly better than predicting the mean face
        mean_face_error = (held_out - held_out.mean(0, keepdim=True)).pow(2).mean().item()
        with torch.no_grad():
            assert torch.nn.functional.mse_loss(model(held_out), held_out).item() < 0.8 * mean_face_error


@pytest.mark.parametrize("arch", list_models())
def test_save_then_load_gives_identical_outputs(arch, tmp_path, train_faces):
    model = create_model(arch, crop=[8, 8, 48, 48], **TINY[arch]).eval()
    model.calibrate(np.linspace(1, 2, 50))
    model.save_pretrained(tmp_path, config=model.config)
    loaded = load_model(tmp_path)
    assert loaded.config == json.loads(json.dumps(model.config))
    assert loaded.crop == (8, 8, 48, 48)
    x = model.preprocess(train_faces[:4])
    with torch.no_grad():
        assert torch.equal(model.score(x), loaded.score(x))
    assert loaded.percentile(1.5) == pytest.approx(50, abs=0.5)


def test_strict_load_refuses_weights_of_another_shape(tmp_path):
    model = create_model("fcn", **TINY["fcn"])
    model.save_pretrained(tmp_path, config=model.config)
    config = json.loads((tmp_path / "config.json").read_text())
    config["latent_dim"] = 9
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="do not match"):
        load_model(tmp_path)


def test_strict_load_refuses_missing_tensors(tmp_path):
    model = create_model("cnn", **TINY["cnn"])
    model.save_pretrained(tmp_path, config=model.config)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "decoder" not in k}
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(InputError, match="Missing key"):
        load_model(tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 100), "not a readable safetensors"),
    (lambda d: (d / "config.json").write_text('{"architecture": "gan"}'), "unknown architecture 'gan'"),
    (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
])
def test_damaged_checkpoints_are_refused_with_reasons(tmp_path, damage, message):
    model = create_model("fcn", **TINY["fcn"])
    model.save_pretrained(tmp_path, config=model.config)
    damage(tmp_path)
    with pytest.raises(InputError, match=message):
        load_model(tmp_path)


def test_vae_reconstructs_from_its_mean_in_eval_mode(train_faces):
    model = create_model("vae", **TINY["vae"]).eval()
    x = model.preprocess(train_faces[:4])
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
