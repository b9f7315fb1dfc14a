"""ad.scoring: the homework's score, batched; one image detected and explained."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ad import InputError, create_model, list_models, load_model
from ad.evaluation import roc_auc
from ad.scoring import Detection, anomaly_scores, detect, synthetic_defects_auc, verdict
from ad.ui.render import DISPLAY_SIZE, heat_map, model_view
from conftest import add_flaws, add_stains, make_images, make_textures, small


def test_score_is_the_l2_norm_of_the_residual(normal_images):
    model = create_model("cnn", **small("cnn")).eval()
    x = model.preprocess(normal_images[:10])
    with torch.no_grad():
        expected = (x - model(x)).flatten(1).norm(dim=1).numpy()
    np.testing.assert_allclose(anomaly_scores(model, normal_images[:10]), expected, rtol=1e-5)


@pytest.mark.parametrize("arch", ["fcn", "geo"])
def test_batching_does_not_change_scores(arch, normal_images):
    model = create_model(arch, **small(arch))  # left in training mode: scoring must switch to eval
    np.testing.assert_allclose(anomaly_scores(model, normal_images[:50], batch_size=1),
                               anomaly_scores(model, normal_images[:50], batch_size=50), rtol=1e-4)


def test_progress_callback_reaches_one(normal_images):
    seen = []
    anomaly_scores(create_model("fcn", **small("fcn")), normal_images[:20], batch_size=8, progress=seen.append)
    assert seen == pytest.approx([0.4, 0.8, 1.0])


@pytest.mark.parametrize("arch", list_models())
def test_trained_models_score_anomalies_above_normal_images(arch, trained, test_images):
    images, labels, _ = test_images
    scores = anomaly_scores(load_model(trained(arch)), images)
    assert scores[labels == 1].mean() > scores[labels == 0].mean()
    assert np.median(scores[labels == 1]) > np.percentile(scores[labels == 0], 90)


@pytest.mark.parametrize("arch", list_models())
def test_detect_explains_one_image_the_same_way_for_every_model(arch, trained, test_images):
    model = load_model(trained(arch))
    images, labels, _ = test_images
    normal_scores = anomaly_scores(model, images[labels == 0])
    typical = images[labels == 0][np.argsort(normal_scores)[len(normal_scores) // 2]]  # a tiny model has outliers
    normal, anomaly = detect(model, typical), detect(model, images[-1])
    assert isinstance(normal, Detection)
    assert normal.input.shape[0] == normal.picture.shape[0] == 3
    assert normal.heat.shape == tuple(normal.input.shape[1:]) and 0 <= normal.heat.min() <= normal.heat.max() <= 1
    assert normal.score == pytest.approx(float(np.sort(normal_scores)[len(normal_scores) // 2]), rel=1e-4)
    assert normal.percentile < anomaly.percentile and anomaly.verdict(99) == "anomalous"
    assert 20 < np.median(model.percentile(normal_scores)) < 80  # unseen normal images fall among the held-out ones


def test_the_verdict_is_above_the_threshold_percentile():
    assert verdict(99.5, 99) == "anomalous" and verdict(99, 99) == "normal" and verdict(60, 50) == "anomalous"


def test_scoring_refuses_bad_arrays():
    with pytest.raises(InputError, match="expected"):
        anomaly_scores(create_model("fcn", **small("fcn")), np.zeros((3, 32, 32, 5), np.uint8))


@pytest.mark.parametrize("size", [32, 64])
def test_pictures_of_either_input_size_are_shown_at_the_display_size(size):
    shown = (DISPLAY_SIZE, DISPLAY_SIZE, 3)
    assert model_view(torch.zeros(3, size, size)).shape == shown
    assert heat_map(np.linspace(0, 1, size * size).reshape(size, size)).shape == shown


def test_a_model_explains_after_scoring_a_set_with_the_same_resizing(normal_images):
    """Resizing weights made under inference mode (scoring a set) must serve gradients (geo's heat map)."""
    model = create_model("geo", windows=[[8, 8, 48, 48], [0, 0, 64, 64]], view_size=24, turns=[0, 1])
    model.calibrate(np.linspace(0, 1, 10))
    anomaly_scores(model, normal_images[:4])
    assert detect(model, normal_images[0]).heat.shape == (64, 64)


def picture_with_a_bar_near_its_left_border():
    """A 40x120 (height x width) dark picture with a bright bar in its first 6 columns, as PNG bytes."""
    import io

    from PIL import Image
    pixels = np.full((40, 120, 3), 20, np.uint8)
    pixels[:, :6] = 250
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("fit, bar_seen", [("whole", True), ("centre", False)])
def test_detect_reads_a_picture_as_the_model_says(fit, bar_seen):
    model = create_model("fcn", **small("fcn"), image_size=32, fit=fit, input_size=32).eval()
    model.calibrate(np.linspace(0, 1, 10))
    detection = detect(model, picture_with_a_bar_near_its_left_border())
    assert detection.input.shape == (3, 32, 32)
    assert bool(detection.input[:, :, 0].min() > 0.5) == bar_seen  # bright (near 1 on [-1, 1]) at the left edge
    assert detection.input[:, :, 8:].max() < -0.5  # the rest is dark either way


def test_training_scoring_and_evaluation_read_at_the_checkpoints_format(data_files, tmp_path, capsys):
    from ad.cli import main
    from ad.training import train
    from conftest import ROOT, train_config
    train(train_config(data_files, tmp_path / "fcn", image_size=32, fit="whole", epochs=1,
                       model={**small("fcn"), "input_size": 32}, test=str(data_files / "testingset.npy"),
                       labels=str(data_files / "testing_labels.npy")))
    model = load_model(tmp_path / "fcn")
    assert model.input_format == {"size": 32, "fit": "whole"} and model.metrics["roc_auc"]["overall"] > 0.5
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "bar.png").write_bytes(picture_with_a_bar_near_its_left_border())
    main(["score", "--checkpoint", str(tmp_path / "fcn"), "--images", str(tmp_path / "pictures"),
          "--out", str(tmp_path / "scores.csv")])
    main(["evaluate", "--checkpoint", str(tmp_path / "fcn"), str(ROOT / "checkpoints" / "fcn"), "--images",
          str(data_files / "testingset.npy"), "--labels", str(data_files / "testing_labels.npy"), "--json"])
    out = capsys.readouterr().out
    assert "wrote 1 scores" in out and '"ensemble"' in out  # a 32x32 and a 64x64 model on one test set


def test_geo_shows_a_flaw_on_a_normal_thing_with_its_surface_memory(trained):
    """Its heat map and defect region come from the surface memory: on the flaw, not on the disc's edges
    where its score's gradient lies; the score is still the network's."""
    model = load_model(trained("geo"))
    flawed, masks = add_flaws(make_images(8, "normal", seed=6), seed=6)
    inside, outside, covered = [], [], []
    for image, mask in zip(flawed, masks):
        detection = detect(model, image)
        inside.append(detection.heat[mask].mean())
        outside.append(detection.heat[~mask].mean())
        covered.append((detection.region(99) & mask).sum() / mask.sum())
    assert np.mean(inside) > 3 * np.mean(outside) and np.median(covered) > 0.5
    assert model.heat_title == model.surface.heat_title and "surfaces" in model.sees()


@pytest.mark.parametrize("checkpoint, region_covers", [("trained_on_texture", False), ("patch_on_texture", True)])
def test_a_flaw_on_a_normal_surface_is_found_and_outlined(checkpoint, region_covers, request):
    """The segmenter outlines the flaw itself; the patch memory also the neighbourhoods that hold it
    (up to half its widest box away), so for it the region must cover the flaw, not lie on it."""
    model = load_model(request.getfixturevalue(checkpoint))
    stained, masks = add_stains(make_textures(8, seed=3), seed=3)
    inside, outside, on_flaw = [], [], []
    for image, mask in zip(stained, masks):
        detection = detect(model, image)
        region = detection.region(99)
        assert region is not None and region.shape == mask.shape
        inside.append(detection.heat[mask].mean())
        outside.append(detection.heat[~mask].mean())
        on_flaw.append((region & mask).sum() / max(1, (mask if region_covers else region).sum()))
    assert np.mean(inside) > 1.5 * np.mean(outside)  # the heat map points at the flaw
    assert np.median(on_flaw) > 0.6  # and most of the outlined region lies on it (or covers it)
    assert not detect(model, make_textures(1, seed=4)[0]).region(99.9).any()  # a clean surface: nothing


def test_the_segmenters_reconstructor_rebuilds_a_stained_surface_as_a_normal_one(trained_on_texture):
    """DRAEM's reconstructive network: inside a wide stain it puts back the surface the stain hid
    (nearer the clean picture than the stained one is), which the segmenter reads beside the picture."""
    model = load_model(trained_on_texture)
    clean = make_textures(8, seed=5)
    stained, masks = add_stains(clean, seed=5, radius=14)
    with torch.no_grad():
        _, rebuilt = model.logits(model.preprocess(stained))
    clean_x, stained_x = model.preprocess(clean), model.preprocess(stained)
    inside = (F.interpolate(torch.from_numpy(masks)[:, None].float(), size=clean_x.shape[-2:]) > 0.5).expand_as(clean_x)
    assert (rebuilt - clean_x)[inside].abs().mean() < 0.5 * (stained_x - clean_x)[inside].abs().mean()


def test_one_duo_checkpoint_raises_the_alarm_for_both_kinds_of_anomaly(trained, test_images):
    """Things unlike the normal ones (geo's part) and a flaw on a normal one (seg's part), each
    against unseen normal images; where the flaw is, seg and the patch memory say (their localising:
    the test above)."""
    model = load_model(trained("duo"))
    # calibrated before the duo, whose score and heat map read theirs
    assert model.geo.calibrated and model.seg.calibrated and model.patch.pixels_calibrated
    images, labels, _ = test_images
    normal = images[labels == 0]
    flawed, _ = add_flaws(normal, side=16)
    normal_scores = anomaly_scores(model, normal)
    for anomalies in (images[labels == 1], flawed):
        scores = np.r_[normal_scores, anomaly_scores(model, anomalies)]
        assert roc_auc(np.repeat([0, 1], [len(normal), len(anomalies)]), scores) > 0.75
    x = model.preprocess(flawed[:4])
    members = [member.explain(x).pixels / member.pixel_threshold(99.0) for member in (model.seg, model.patch)]
    torch.testing.assert_close(model.explain(x).pixels, members[0] + members[1])  # both say where, each on its scale


def test_duo_adds_up_how_rare_each_member_finds_an_image():
    """Fisher's method: -ln(share of a member's normal scores at least as high), summed over both."""
    model = create_model("duo", **small("duo"))
    model.geo.calibrate(np.arange(1000.0))  # geo: normal scores 0 .. 999
    model.seg.calibrate(np.arange(1000.0) / 1000)  # seg: another scale, the same ranks
    geo, seg = torch.tensor([499.5, 989.0, 2000.0]), torch.tensor([0.4995, 0.989, 2.0])
    surprise = model.geo.surprise(geo)
    np.testing.assert_allclose(surprise[:2], [np.log(2), np.log(100)], rtol=1e-3)  # median; 99th percentile
    assert surprise[2] > surprise[1] + 10  # past the last normal score it keeps rising: the rarest still rank
    np.testing.assert_allclose(model.seg.surprise(seg), surprise, rtol=1e-4)  # units do not matter
    np.testing.assert_allclose(model.combined(geo, seg), 2 * surprise, rtol=1e-4)
    assert model.combined(geo[:1], seg[2:]) > model.combined(geo[1:2], seg[1:2])  # one alarmed member is enough


@pytest.mark.parametrize("arch", list_models())
def test_every_calibrated_model_outlines_nothing_on_most_normal_images(arch, trained, test_images):
    model = load_model(trained(arch))
    images, labels, _ = test_images
    regions = [detect(model, image).region(99) for image in images[labels == 0][:20]]
    assert np.mean([region.any() for region in regions]) <= 0.3  # calibrated: 1% of held-out ones show any


def test_a_model_checks_itself_on_synthetic_defects_and_records_it(trained_on_texture):
    model = load_model(trained_on_texture)
    recorded = model.training_record["synthetic_defects_roc_auc"]  # what the app's menus show without labels
    assert recorded == pytest.approx(synthetic_defects_auc(model, make_textures(60, seed=9)), abs=0.1)
    assert recorded > 0.6  # above chance: the small segmenter tells surfaces from the same ones with a pasted flaw
