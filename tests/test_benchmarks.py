"""The benchmark scripts' own logic, and the shipped face checkpoints still at their figures."""

import numpy as np
import pytest

from ad import checkpoint
from ad.data import load_test_set
from ad.evaluation import auc_by_source
from ad.scoring import anomaly_scores
from benchmarks.benchmark import format_rows, shuffled_faces
from benchmarks.readme import replace_section
from conftest import ROOT, SAMPLE_TESTSET


def test_shuffled_faces_rearrange_the_same_tiles():
    faces = np.asarray(load_test_set(SAMPLE_TESTSET / "testingset.npy",
                                     SAMPLE_TESTSET / "testing_labels.npy").images[:4])
    shuffled = shuffled_faces(faces)
    assert shuffled.shape == faces.shape and shuffled.dtype == np.uint8
    assert not np.array_equal(shuffled, faces)

    def tiles(image):  # the 16 tiles of 16x16 pixels, in a canonical order
        cut = image.reshape(4, 16, 4, 16, 3).transpose(0, 2, 1, 3, 4).reshape(16, -1)
        return sorted(map(bytes, cut))
    for face, anomaly in zip(faces, shuffled):
        assert tiles(face) == tiles(anomaly)  # same colours and textures, only the layout differs
    np.testing.assert_array_equal(shuffled, shuffled_faces(faces))  # reproducible


def test_table_leaves_unmeasured_cells_empty_and_extrapolates_to_the_full_test_set():
    rows = [{"detector": "a", "auc": {"overall": 0.9, "1": 0.8}, "params": 2e6, "throughput": 19_636 / 4},
            {"detector": "b", "auc": {"overall": 0.5, "1": 0.4}}]
    header, _, first, second = format_rows(rows).splitlines()
    assert "normal vs UTKFace" in header and "one image" not in header  # speed.py times one image
    assert first.split(" | ")[1:4] == ["0.900", "0.800", "2.00 M"] and first.endswith("| 4.0 s |")
    assert second.endswith("| - | - | - | - | - |")


def test_readme_sections_are_replaced_between_their_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- t:begin -->\nold\n<!-- t:end -->\noutro\n")
    replace_section("t", "new table", readme)
    assert readme.read_text() == "intro\n<!-- t:begin -->\nnew table\n<!-- t:end -->\noutro\n"
    with pytest.raises(SystemExit, match="markers"):
        replace_section("missing", "x", readme)


@pytest.mark.parametrize("name", ["fcn", "geo"])
def test_the_shipped_face_checkpoints_keep_their_faces_dev_figures(faces_dev, name):
    model = checkpoint.load(ROOT / "checkpoints" / name)
    test_set = load_test_set(faces_dev / "testingset.npy", faces_dev / "testing_labels.npy",
                             faces_dev / "testing_sources.npy")
    measured = auc_by_source(test_set.labels, anomaly_scores(model, test_set.images), test_set.sources)
    assert measured == pytest.approx(model.metrics["roc_auc"], abs=1e-3)  # what metrics.json and README say
