"""ad.models: the registry, every architecture's sizes, learning and explanation, the same for all."""

import warnings

import numpy as np
import pytest
import torch

from ad import InputError, create_model, list_models
from ad.models import Detector, Explanation, model_class, register_model
from conftest import make_images, small


def test_registry_lists_the_homework_architectures_first():
    assert list_models() == ["fcn", "cnn", "vae", "resnet", "multi", "geo", "seg", "patch", "duo"]


def test_unknown_architecture_is_named_in_the_error():
    with pytest.raises(InputError, match="unknown architecture 'transformer'.*fcn, cnn"):
        create_model("transformer")


def test_registering_a_name_twice_warns():
    class First(Detector):
        pass

    class Second(Detector):
        pass
    from ad.models import registry
    try:
        register_model("twice", order=99)(First)
        with pytest.warns(UserWarning, match="'twice' is registered twice.*Second replaces.*First"):
            register_model("twice", order=99)(Second)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            register_model("twice", order=99)(Second)  # the same class again is no duplicate
    finally:
        registry._MODELS.pop("twice")


@pytest.mark.parametrize("arch", list_models())
def test_default_configuration_fits_the_size_budget(arch):
    model = create_model(arch).eval()
    assert model.score(model.preprocess(np.zeros((2, 64, 64, 3), np.uint8))).shape == (2,)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert weights < 15 * 1024**2  # checkpoint folder under 15 MB, memories and calibration included


@pytest.mark.parametrize("arch", list_models())
def test_every_model_says_what_it_is_and_what_its_pictures_show(arch):
    model = create_model(arch, **small(arch))
    for attribute in ("summary", "score_description", "picture_label", "heat_title", "heat_unit"):
        assert getattr(model, attribute), f"{arch} has no {attribute}"
    assert model.heat_full_scale > 0


@pytest.mark.parametrize("arch", ["fcn", "cnn", "vae", "resnet", "multi"])
def test_autoencoders_read_their_crop_at_the_input_size(arch, normal_images):
    model = create_model(arch, **small(arch), crop=(16, 16, 32, 32), input_size=32).eval()
    x = model.preprocess(normal_images[:3])
    assert x.shape == (3, 3, 32, 32)
    result = model.explain(x)
    assert result.picture.shape == (3, 3, 32, 32) and result.heat.shape == (3, 32, 32)


@pytest.mark.parametrize("size, message",
                         [(30, "multiple of 8"), (4, "from 8 to 256"), ("32", "from 8 to 256")])
def test_input_sizes_the_architecture_cannot_take_are_refused(size, message):
    with pytest.raises(InputError, match=message):
        create_model("cnn", **small("cnn"), input_size=size)


@pytest.mark.parametrize("options, message", [
    ({"padding": "circular"}, "seg's padding 'circular': expected one of reflect, zeros"),
    ({"image_size": 16, "depth": 4}, "seg at 16 px with depth 4: the deepest level would be under 2 px; "
                                     "expected a depth of at most 3")])
def test_segmenters_it_cannot_build_are_refused(options, message):
    with pytest.raises(InputError, match=message):
        create_model("seg", **{**small("seg"), **options})
    create_model("seg", **{**small("seg"), **options, "depth": 3, "padding": "zeros"})  # what the message offers


GRADIENT_LEARNERS = [name for name in list_models() if model_class(name).learns_by_gradient]


@pytest.mark.parametrize("arch", GRADIENT_LEARNERS)  # patch remembers instead: the test below
def test_loss_falls_when_training(arch, normal_images):
    torch.manual_seed(0)
    model = create_model(arch, **small(arch))
    held_out = model.preprocess(normal_images[:64])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def held_out_loss():
        model.eval()
        with torch.no_grad():
            torch.manual_seed(1)  # the VAE's loss samples
            return model.loss(held_out).item()

    before = held_out_loss()
    for step in range(60):
        x = model.preprocess(normal_images[64 + (step * 32) % 320:][:32])
        model.train()
        loss = model.loss(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert after < 0.8 * before, (before, after)  # (that it separates: test_scoring.py)


@pytest.mark.parametrize("arch", list_models())
def test_explain_gives_the_same_named_result_for_every_model(arch, normal_images):
    model = create_model(arch, **small(arch)).eval()
    x = model.preprocess(normal_images[:3])
    result = model.explain(x)
    assert isinstance(result, Explanation)
    assert result.score.shape == (3,) and result.picture.shape[:2] == (3, 3)
    assert result.heat.shape == (3, *x.shape[-2:]) and 0 <= result.heat.min() <= result.heat.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(result.score, model.score(x), rtol=1e-4, atol=1e-5)


def test_a_patch_memory_learns_by_remembering_and_takes_no_steps(normal_images):
    from ad.scoring import remember
    model = create_model("patch", **small("patch")).eval()
    assert not model.learns_by_gradient and model.remembers
    held_out = model.preprocess(normal_images[:64])
    with torch.no_grad():
        before = model.loss(held_out).item()
        remember(model, normal_images[64:])
        assert model.loss(held_out).item() < 0.5 * before  # unseen normal neighbourhoods are near remembered ones
        assert model.loss(model.preprocess(make_images(64, "anomaly"))).item() > 2 * model.loss(held_out).item()


def test_geos_memory_holds_what_the_network_sees_in_normal_images_and_scores_by_it(normal_images):
    from ad.scoring import remember
    torch.manual_seed(0)
    model = create_model("geo", **small("geo"))
    assert model.remembers and model.learns_by_gradient and model.memory_images == 256
    remember(model, normal_images)  # before training: only what merely remembers is filled
    assert not model.memory.any()
    remember(model, normal_images[:100], learned=True)  # after an epoch; 100 images fill 256 round again
    x = model.preprocess(normal_images[:3])
    with torch.no_grad():
        remembered = torch.nn.functional.normalize(model.view_features(x), dim=-1).transpose(0, 1)
        torch.testing.assert_close(model.memory[:3].float(), remembered, atol=2e-3, rtol=0)
        torch.testing.assert_close(model.memory[100:103], model.memory[:3])
        assert model.score(x).abs().max() < 0.05  # a remembered image is its own nearest neighbour
        unseen = model.score(model.preprocess(normal_images[100:164])).mean()
        assert model.score(model.preprocess(make_images(64, "anomaly"))).mean() > 1.5 * unseen > 0


def test_a_geo_without_a_memory_scores_by_its_cross_entropies(normal_images):
    model = create_model("geo", **{**small("geo"), "memory_size": 0}).eval()
    assert not model.remembers and model.memory is None and "memory" not in model.state_dict()
    x = model.preprocess(normal_images[:3])
    with torch.no_grad():
        torch.testing.assert_close(model.score(x), model.view_losses(x).sum(dim=0))
    with pytest.raises(InputError, match="geo's memory_size -1: expected a whole number of normal images"):
        create_model("geo", memory_size=-1)
    for surface in ({"fit": "whole"}, 3):  # the surface memory reads geo's input, and only a dict configures it
        with pytest.raises(InputError, match="geo's surface: expected a dict of the patch memory's options"):
            create_model("geo", surface=surface)


def test_geo_lays_out_its_views_without_an_empty_cell(normal_images):
    model = create_model("geo", **small("geo")).eval()
    picture = model.explain(model.preprocess(normal_images[:1])).picture[0]  # (3, H, W)
    side = model.view_size + 4  # each view framed by 2 px
    rows, columns = picture.shape[1] // side, picture.shape[2] // side
    assert rows * columns == model.num_views and picture.shape[1:] == (rows * side, columns * side)
    cells = picture.unfold(1, side, side).unfold(2, side, side)  # (3, rows, columns, side, side)
    assert (cells[:, :, :, 2:-2, 2:-2].flatten(3).std(dim=3) > 0).all()  # every cell shows a view


def test_the_vae_scores_its_mean_reconstruction_and_samples_only_in_its_loss(normal_images):
    torch.manual_seed(0)
    model = create_model("vae", **small("vae")).eval()
    x = model.preprocess(normal_images[:4])
    with torch.no_grad():
        mean, _ = model.posterior(x)
        expected = (x - model.decoder(mean)).flatten(1).norm(dim=1)
        torch.testing.assert_close(model.score(x), expected)
        assert model.loss(x).item() != model.loss(x).item()  # the loss draws a new sample each time


def test_geo_is_never_trained_on_mirrored_images_when_mirroring_changes_a_views_label():
    from ad.models.geo import FACE_WINDOWS
    whole_image = [[0, 0, 64, 64]]
    assert not create_model("geo", windows=whole_image).mirror_sensitive  # a mirrored image is still upright
    assert create_model("geo").mirror_sensitive  # the general views shift left and right
    assert create_model("geo", windows=FACE_WINDOWS, turns=[0]).mirror_sensitive
    assert create_model("geo", windows=whole_image, mirrors=True).mirror_sensitive
    assert not create_model("fcn").mirror_sensitive


def test_the_detector_overrides_only_the_hub_mixins_hooks_with_its_signature():
    import inspect

    from huggingface_hub import ModelHubMixin, PyTorchModelHubMixin
    for public in ("from_pretrained", "save_pretrained", "push_to_hub"):
        assert public not in vars(Detector), f"Detector overrides the mixin's public {public}"
    ours = inspect.signature(Detector._from_pretrained).parameters
    theirs = inspect.signature(PyTorchModelHubMixin._from_pretrained).parameters
    assert list(theirs) == list(ours) and ours["strict"].default is True  # the mixin's default is not strict
    assert set(inspect.signature(ModelHubMixin._from_pretrained).parameters) <= set(ours)


def test_the_mixins_save_and_load_are_strict_and_keep_the_input_format(tmp_path, normal_images):
    model = create_model("fcn", **small("fcn"), image_size=48, fit="whole").eval()
    with pytest.raises(InputError, match="not calibrated"):
        model.save_pretrained(tmp_path / "mixin")
    model.calibrate(np.linspace(0, 1, 10))
    model.save_pretrained(tmp_path / "mixin")  # the mixin's public method, our hook
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in (tmp_path / "mixin").iterdir()}
    loaded = Detector.from_pretrained(tmp_path / "mixin")
    assert loaded.config == model.config and loaded.input_format == {"size": 48, "fit": "whole"}
    assert not loaded.training  # ready to score, as every loader gives it
    with pytest.raises(InputError, match="strictly"):
        Detector.from_pretrained(tmp_path / "mixin", strict=False)
    with pytest.raises(InputError, match="latent_dim cannot be given here"):
        type(model).from_pretrained(tmp_path / "mixin", latent_dim=3)


@pytest.mark.parametrize("arch", list_models())
def test_every_architecture_takes_the_input_format_and_its_crop_lies_on_it(arch, normal_images):
    if arch == "duo":  # it reads whole pictures: a crop would hide flaws from its segmenter
        with pytest.raises(InputError, match="duo reads the whole picture"):
            create_model(arch, **small(arch), crop=[0, 0, 32, 32])
        crop = None
    else:
        crop = [64, 64, 64, 64]
    model = create_model(arch, **small(arch), image_size=128, fit="whole", crop=crop).eval()
    assert model.input_format == {"size": 128, "fit": "whole"} and model.config["image_size"] == 128
    assert "the whole picture, resized to 128x128 (its aspect ratio not kept)" in model.sees() or arch == "geo"
    x = model.preprocess(np.zeros((2, 128, 128, 3), np.uint8))
    assert model.score(x).shape == (2,)
    with pytest.raises(InputError, match="inside the 64x64 image" if crop else "duo reads the whole picture"):
        create_model(arch, **small(arch), crop=[64, 64, 64, 64])  # the default square is HW8's
    with pytest.raises(InputError, match="image_size 1024"):
        create_model(arch, **small(arch), image_size=1024)
