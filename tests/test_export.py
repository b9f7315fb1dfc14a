"""ONNX export: the graph scores as `ad` does, preprocessing included, calibration in its metadata."""

import json

import numpy as np
import pytest

from ad import list_models, load_model
from ad.cli import main
from ad.scoring import anomaly_scores

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed (requirements-dev.txt has it)")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (requirements-dev.txt has it)")
from ad.export import onnx_scores  # noqa: E402


@pytest.mark.parametrize("arch", list_models())
def test_the_exported_graph_scores_as_ad_score_does(arch, trained, test_images, tmp_path, capsys):
    images, labels, _ = test_images
    main(["export", "--checkpoint", str(trained(arch)), "--out", str(tmp_path / "model.onnx")])
    assert "anomaly scores (N,) out" in capsys.readouterr().out
    model = load_model(trained(arch))
    expected = anomaly_scores(model, images)
    # duo's surprises magnify its members' float rounding where their normal quantiles lie close
    # together: 1e-6 in the tiny seg's score moved the tiny duo's by 6e-3 (of 4.6 at a 99th percentile)
    # and the patch memory's nearest distances, |q|^2 + |m|^2 - 2 q.m summed in another order, differ by 5e-4
    tolerance = {"duo": 1e-2, "patch": 1e-3}.get(arch, 1e-4)
    np.testing.assert_allclose(onnx_scores(tmp_path / "model.onnx", images), expected, atol=tolerance, rtol=1e-4)
    metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    quantiles = np.array(json.loads(metadata["normal_score_quantiles"]))
    np.testing.assert_allclose(quantiles, model.normal_score_quantiles.numpy())
    assert metadata["architecture"] == arch and json.loads(metadata["config"]) == model.config
    # a deployment with onnxruntime alone reads percentiles as the app does
    percentiles = np.interp(expected, quantiles, np.linspace(0, 100, len(quantiles)))
    np.testing.assert_allclose(percentiles, model.percentile(expected), atol=1e-3)


def test_a_checkpoint_that_is_not_there_is_refused_and_nothing_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "model.onnx")])
    assert exit_.value.code == 2 and "error:" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_graph_takes_images_at_the_models_input_format(tmp_path, normal_images):
    from ad import create_model
    from ad.data import standardize_images
    from ad.export import export_onnx
    from conftest import small
    model = create_model("cnn", **small("cnn"), image_size=32, fit="whole", input_size=32).eval()
    images = standardize_images(normal_images[:8], size=32, fit="whole")
    model.calibrate(anomaly_scores(model, images))
    metadata = export_onnx(model, tmp_path / "model.onnx")
    assert metadata["image_size"] == "32" and metadata["fit"] == "whole" and "(N, 32, 32, 3)" in metadata["input"]
    np.testing.assert_allclose(onnx_scores(tmp_path / "model.onnx", images), anomaly_scores(model, images),
                               atol=1e-4, rtol=0)
