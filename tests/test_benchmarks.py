"""The benchmark scripts' own logic, and the shipped face checkpoints still at their figures."""

import gzip
import json
import shlex

import numpy as np
import pytest
from PIL import Image

from ad import checkpoint
from ad.cli import parse_model_options
from ad.data import load_test_set
from ad.evaluation import auc_by_source
from ad.scoring import anomaly_scores
from benchmarks import blots, combinations, defects, oneclass, oneclass_data
from benchmarks.benchmark import FACES_DEV_SOURCES, format_rows, shuffled_faces
from benchmarks.readme import replace_section
from benchmarks.speed import FULL_HW8_TEST_SET
from conftest import ROOT, SAMPLE_TESTSET, make_images, small


def test_the_defect_benchmarks_commands_give_train_py_each_rows_options_through_a_shell():
    """README shows each row's command; pasted into a shell, its --set values must still be JSON."""
    for options in defects.ROWS.values():
        argv = shlex.split(defects.command(options).strip("`"))
        assert parse_model_options([argv[i + 1] for i, flag in enumerate(argv) if flag == "--set"]) == \
            options.get("model", {})


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
    rows = [{"detector": "a", "auc": {"overall": 0.9, "UTKFace": 0.8}, "params": 2e6,
             "throughput": FULL_HW8_TEST_SET / 4},  # images a second: the full set in 4 s
            {"detector": "b", "auc": {"overall": 0.5, "UTKFace": 0.4}}]
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
                             faces_dev / "testing_sources.npy", FACES_DEV_SOURCES)
    measured = auc_by_source(test_set.labels, anomaly_scores(model, test_set.images), test_set.sources)
    assert measured == pytest.approx(model.metrics["roc_auc"], abs=1e-3)  # what metrics.json and README say


def write_idx(path, array):
    """The MNIST family's IDX format, gzipped: as Debian's dataset-fashion-mnist ships it."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_files_are_read_as_debian_ships_them(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "images.gz", images)
    np.testing.assert_array_equal(oneclass.read_idx(tmp_path / "images.gz"), images)
    (tmp_path / "cut").write_bytes(gzip.decompress((tmp_path / "images.gz").read_bytes())[:500])
    with pytest.raises(ValueError, match="truncated"):
        oneclass.read_idx(tmp_path / "cut")


def test_the_one_class_protocol_on_a_tiny_slice(tmp_path):
    """Two classes of made 28x28 grey images: each trained alone, tested against the other."""
    def grey(images):
        return np.stack([np.asarray(Image.fromarray(x).convert("L").resize((28, 28))) for x in images])
    train_x = grey(np.concatenate([make_images(200, "normal"), make_images(200, "anomaly")]))
    test_x = grey(np.concatenate([make_images(30, "normal", seed=5), make_images(30, "anomaly", seed=5)]))
    train_y, test_y = np.repeat([0, 1], 200), np.repeat([0, 1], 30)
    for i, (name, array) in enumerate([("train-images-idx3-ubyte", train_x), ("train-labels-idx1-ubyte", train_y),
                                       ("t10k-images-idx3-ubyte", test_x), ("t10k-labels-idx1-ubyte", test_y)]):
        write_idx(tmp_path / f"{name}.gz", array)
    data = oneclass.load_fashion_mnist(tmp_path)
    row = oneclass.run_row({"arch": "geo", "model": small("geo"), "epochs": 8, "batch_size": 32,
                            "warmup_steps": 5}, [0], *data)
    assert row["per_class"]["0"] > 0.8 and row["mean"] == row["per_class"]["0"]
    table = oneclass.format_table({"tiny": row})
    assert f"({row['mean']:.3f}, 1 classes)" in table  # an incomplete row is never shown as a mean
    assert "published: GEOM" in table.splitlines()[-1]


def colour32(images):
    return np.stack([np.asarray(Image.fromarray(x).resize((32, 32))) for x in images])


def write_cifar100(folder, train_x, train_y, test_x, test_y):
    """The four arrays make_cifar100.py writes."""
    folder.mkdir(exist_ok=True)
    for name, array in zip(oneclass_data.CIFAR100_FILES, (train_x, train_y, test_x, test_y)):
        np.save(folder / name, array)
    return folder


def test_the_cifar100_superclass_protocol_on_a_tiny_made_set(tmp_path):
    """Two superclasses of made 32x32 colour photos: superclass 7 trained alone, tested against 12."""
    train_x = colour32(np.concatenate([make_images(200, "normal"), make_images(200, "anomaly")]))
    test_x = colour32(np.concatenate([make_images(30, "anomaly", seed=5), make_images(30, "normal", seed=5)]))
    train_y, test_y = np.repeat([7, 12], 200).astype(np.uint8), np.repeat([12, 7], 30).astype(np.uint8)
    data = oneclass_data.load_cifar100(write_cifar100(tmp_path / "cifar100", train_x, train_y, test_x, test_y))
    cifar100 = oneclass_data.DATASETS["cifar100"]
    row = oneclass.run_row({"arch": "geo", "model": small("geo"), "epochs": 8, "batch_size": 32,
                            "warmup_steps": 5}, [7], *data, names=cifar100.classes)
    assert row["per_class"]["7"] > 0.8 and row["mean"] == row["per_class"]["7"]
    lines = oneclass.format_table({"tiny": row}, cifar100).splitlines()
    assert "7 insects" in lines[0] and "19 vehicles 2" in lines[0] and len(lines[0].split(" | ")) == 23
    assert f"({row['mean']:.3f}, 1 classes)" in lines[2] and lines[2].split(" | ")[2 + 7] != "-"
    assert [line.split(" | ")[1] for line in lines[3:]] == ["0.787", "0.896"]  # GEOM, then CSI
    table, footnote = oneclass.readme_section("cifar100", {})
    assert table.startswith("(not yet measured") and "not checked against the papers' tables" in footnote


@pytest.mark.parametrize("data", [None, "missing"])
def test_the_cifar100_benchmark_exits_saying_how_to_build_the_data_when_it_is_absent(data, tmp_path, capsys):
    before = oneclass.RESULTS.read_bytes() if oneclass.RESULTS.exists() else None
    with pytest.raises(SystemExit, match="a clone of the public CIFAR-100 PNG repository"):
        oneclass.main(["--dataset", "cifar100", *(["--data", str(tmp_path / data)] if data else [])])
    assert (oneclass.RESULTS.read_bytes() if oneclass.RESULTS.exists() else None) == before


def test_cifar100_is_read_from_the_png_repository_as_it_is_cloned(tmp_path):
    """train/<fine class>/*.png and test/...: each fine class lands in its superclass."""
    from PIL import Image
    members = [fine for group in oneclass_data.CIFAR100_MEMBERS for fine in group.split()]
    assert len(set(members)) == 100
    for split, count in (("train", 2), ("test", 1)):
        for i, fine in enumerate(members):
            (tmp_path / split / fine).mkdir(parents=True)
            for j in range(count):
                Image.fromarray(np.full((32, 32, 3), i, np.uint8)).save(tmp_path / split / fine / f"{fine}_{j}.png")
    train_x, train_y, test_x, test_y = oneclass_data.load_cifar100(tmp_path)
    assert train_x.shape == (200, 32, 32, 3) and test_x.shape == (100, 32, 32, 3)
    whale, tractor = members.index("whale"), members.index("tractor")
    superclass_of = dict(zip(test_x[:, 0, 0, 0].tolist(), test_y.tolist()))  # each test photo's value is its class
    assert superclass_of[whale] == 0 and superclass_of[tractor] == 19
    assert np.bincount(train_y).tolist() == [10] * 20
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "test" / "whale" / "whale_small.png")
    with pytest.raises(SystemExit, match="whale_small.png: 16x16; expected a 32x32"):
        oneclass_data.load_cifar100(tmp_path)


def test_cifar100_arrays_of_the_wrong_shape_are_named(tmp_path):
    images, labels = np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.uint8)
    write_cifar100(tmp_path, images[:, :16], labels, images, labels)
    with pytest.raises(SystemExit, match=r"cifar100_train_x.npy: .*expected \(N, 32, 32, 3\) uint8"):
        oneclass_data.load_cifar100(tmp_path)
    write_cifar100(tmp_path, images, labels, images, labels + 20)
    with pytest.raises(SystemExit, match="cifar100_test_coarse.npy: .*from 0 to 19"):
        oneclass_data.load_cifar100(tmp_path)


def test_results_of_the_first_layout_read_as_fashion_mnist_rows(tmp_path):
    row = {"per_class": {"0": 0.9}, "mean": 0.9, "minutes_per_class": 1.0, "options": {}}
    (tmp_path / "flat.json").write_text(json.dumps({"recommended (train.py defaults)": row}))
    assert oneclass.read_results(tmp_path / "flat.json") == {"fashion-mnist": {"recommended (train.py defaults)": row}}
    (tmp_path / "by_set.json").write_text(json.dumps({"cifar100": {"fcn": row}}))
    assert oneclass.read_results(tmp_path / "by_set.json") == {"cifar100": {"fcn": row}}


def test_the_combinations_benchmark_adds_up_duos_members_as_duo_does(trained, test_images):
    duo = checkpoint.load(trained("duo"))
    images = test_images[0][:40]
    rules = combinations.rules(duo, anomaly_scores(duo.geo, images), anomaly_scores(duo.seg, images))
    np.testing.assert_allclose(rules[combinations.DUOS_RULE], anomaly_scores(duo, images), rtol=1e-4, atol=1e-4)
    assert all(scores.shape == (40,) and np.isfinite(scores).all() for scores in rules.values())


def test_blots_are_painted_where_their_masks_say_and_a_trained_autoencoder_points_at_them(trained, normal_images):
    from ad import load_model
    faces = np.asarray(normal_images[:16])
    painted, masks = blots.paint_blots(faces)
    changed = (painted != faces).any(axis=-1)
    assert (changed <= masks).all() and changed.sum() > 0.9 * masks.sum()  # a colour equal to the face is rare
    assert all(40 <= m.sum() <= 330 for m in masks)  # 8 to 20 px across
    model = load_model(trained("fcn"))
    inside, chance = blots.hottest_inside(model, painted, masks)
    assert np.nanmean(inside) > 2 * np.nanmean(chance)  # the residual is largest on the paint
