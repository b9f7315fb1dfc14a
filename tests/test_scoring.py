"""ad.scoring: the homework's score, batched; per-image explanations."""

import numpy as np
import pytest
import torch

from ad import InputError, create_model
from ad.scoring import anomaly_scores, explain
from ad.ui.render import DISPLAY_SIZE, heat_map, model_view
from conftest import TINY


def test_score_is_the_l2_norm_of_the_residual(train_faces):
    model = create_model("cnn", **TINY["cnn"]).eval()
    x = model.preprocess(train_faces[:10])
    with torch.no_grad():
        expected = (x - model(x)).flatten(1).norm(dim=1).numpy()
    np.testing.assert_allclose(anomaly_scores(model, train_faces[:10]), expected, rtol=1e-5)


def test_batching_does_not_change_scores(train_faces):
    model = create_model("fcn", **TINY["fcn"]).eval()
    np.testing.assert_allclose(anomaly_scores(model, train_faces[:50], batch_size=7),
                               anomaly_scores(model, train_faces[:50], batch_size=50), rtol=1e-5)


def test_progress_callback_reaches_one(train_faces):
    seen = []
    anomaly_scores(create_model("fcn", **TINY["fcn"]), train_faces[:20], batch_size=8, progress=seen.append)
    assert seen == pytest.approx([0.4, 0.8, 1.0])


def test_explain_returns_maps_and_a_calibrated_percentile(train_faces):
    model = create_model("cnn", crop=[8, 8, 48, 48], **TINY["cnn"]).eval()
    model.calibrate(anomaly_scores(model, train_faces[:100]))
    result = explain(model, train_faces[0])
    assert result["input"].shape == result["picture"].shape == (3, 64, 64)  # the reconstruction
    assert result["heat"].shape == (64, 64) and 0 <= result["heat"].min() <= result["heat"].max() <= 1
    assert result["score"] == pytest.approx(float(anomaly_scores(model, train_faces[:1])[0]), rel=1e-5)
    assert 0 <= result["percentile"] <= 100


def test_geo_explains_with_its_views_and_an_evidence_map(train_faces):
    model = create_model("geo", **TINY["geo"]).eval()
    model.calibrate(anomaly_scores(model, train_faces[:50]))
    result = explain(model, train_faces[0])
    assert result["picture"].shape[0] == 3 and result["heat"].shape == (64, 64)
    assert result["heat"].max() > 0
    assert result["score"] == pytest.approx(float(anomaly_scores(model, train_faces[:1])[0]), rel=1e-4)


def test_scoring_refuses_bad_arrays():
    with pytest.raises(InputError, match="expected"):
        anomaly_scores(create_model("fcn", **TINY["fcn"]), np.zeros((3, 32, 32, 3), np.uint8))


@pytest.mark.parametrize("size", [32, 64])
def test_pictures_of_either_input_size_are_shown_at_the_display_size(size):
    shown = (DISPLAY_SIZE, DISPLAY_SIZE, 3)
    assert model_view(torch.zeros(3, size, size)).shape == shown
    assert heat_map(np.linspace(0, 1, size * size).reshape(size, size)).shape == shown
