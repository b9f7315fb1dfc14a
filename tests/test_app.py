"""The app over HTTP (gradio_client) and in a real browser (Playwright driving Debian's Chromium)."""

import contextlib
import io
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ad import list_models
from ad.models import model_class
from ad.cli import main
from ad.scoring import verdict
from ad.ui.render import DISPLAY_SIZE, REGION_COLOUR, SHEET_CELL
from ad.ui.stored_run import BEST_F1, GALLERY_SIZE, PERCENTILE
from ad.ui.tabs import build_demo
from ad.ui.texts import ENSEMBLE, NO_VERDICT
from ad.ui.zoo import load_zoo, model_sources
from conftest import (EXAMPLES, ROOT, SAMPLE_TESTSET, add_flaws, add_stains, make_images, make_textures, train_config,
                      write_mvtec)

NORMAL, CIFAR = "normal_celeba", "anomaly_cifar10"
SHIPPED = [name for name in list_models() if (ROOT / "checkpoints" / name).is_dir()]  # the app's default models

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    """The app as `python app.py` builds it: the shipped checkpoints, on 127.0.0.1."""
    import app
    port = free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.LAUNCH)
    yield f"http://127.0.0.1:{port}/"
    app.demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def pngs():
    """The bundled examples: five normal faces and five CIFAR-10 images, as PNG files."""
    return {kind: [str(EXAMPLES / "images" / f"{kind}_{i}.png") for i in range(1, 6)] for kind in (NORMAL, CIFAR)}


def test_the_shipped_checkpoints_all_load():
    zoo = load_zoo(model_sources(ROOT / "checkpoints"))
    assert not zoo.errors
    users_train = ("seg", "patch", "duo")  # the flaw finders: each data set of parts needs its own
    assert list(zoo.models) == SHIPPED == [name for name in list_models() if name not in users_train]


def test_detect_scores_cifar_images_above_normal_faces(client, pngs):
    from gradio_client import handle_file

    def score(path):
        seen, reconstruction, heat, overlay, summary, details, chart, note, before_after = client.predict(
            handle_file(path), "cnn", 99.0, api_name="/detect")
        square = (DISPLAY_SIZE, DISPLAY_SIZE)
        assert [Image.open(p).size for p in before_after] == [square] * 2  # input, reconstruction
        for picture in (seen, reconstruction, heat, overlay):
            with Image.open(picture) as image:
                assert image.format == "PNG" and image.size == square
        assert details["verdict"] == verdict(details["percentile"], 99.0)
        assert details["verdict"].upper() in summary and 0 <= details["percentile"] <= 100
        assert "reads only the box at row 16, column 16" in note  # cnn's crop, said beside the input
        return details["score"]

    normal = np.mean([score(p) for p in pngs[NORMAL]])
    cifar = np.mean([score(p) for p in pngs[CIFAR]])
    assert cifar > normal, (cifar, normal)


def test_detect_verdict_follows_the_threshold(client, pngs):
    from gradio_client import handle_file
    low = client.predict(handle_file(pngs[CIFAR][0]), "fcn", 50.0, api_name="/detect")[5]
    high = client.predict(handle_file(pngs[CIFAR][0]), "fcn", 99.9, api_name="/detect")[5]
    assert low["score"] == high["score"] and low["threshold_score"] < high["threshold_score"]
    assert (low["verdict"], high["verdict"]) == (verdict(low["percentile"], 50), verdict(high["percentile"], 99.9))


def test_compare_returns_every_architecture_an_ensemble_and_whom_to_trust(client, pngs):
    from gradio_client import handle_file
    sheet, shown, agreement, legends, figures = client.predict(handle_file(pngs[CIFAR][0]), 99.0, api_name="/compare")
    rows = table(shown)
    assert [f["model"] for f in figures] == SHIPPED  # the figures as data too (agents, the threshold)
    assert [row["model"].removeprefix("★ ") for row in rows] == SHIPPED + [ENSEMBLE]
    assert [row["model"] for row in rows if row["model"].startswith("★")] == ["★ geo"]  # the best ROC-AUC
    assert rows[-1]["percentile"] == pytest.approx(np.mean([row["percentile"] for row in rows[:-1]]), abs=0.01)
    assert rows[-1]["score"] is None  # the ensemble's figure is the mean percentile: it has no score
    assert all(row["verdict"] == verdict(row["percentile"], 99.0) for row in rows[:-1])
    assert rows[-1]["verdict"] == NO_VERDICT  # not measured to beat the best model: no verdict, and why
    assert "geo" in agreement and ("agree" in agreement) and "not been measured to beat" in agreement
    with Image.open(sheet) as picture:  # one row of pictures per model, every row in view
        assert picture.height > len(SHIPPED) * SHEET_CELL


def evaluate(client, *test_set, models, mode=PERCENTILE, percentile=99.0):
    """The Evaluate tab's outputs by label: what a visitor sees after pressing Evaluate."""
    outputs = client.predict(*test_set, models, mode, percentile, api_name="/evaluate")
    names = ["overview", "ranking", "curves", "agreement", "inspected", "at_threshold", "confusion", "histograms",
             "flagged", "false_positives", "false_negatives", "ranked", "files", "defects"]
    return dict(zip(names, outputs))


def value(output):
    """An output as shown: updates (that also make a component visible) carry it under 'value'."""
    return output["value"] if isinstance(output, dict) and "__type__" in output else output


def table(output):
    shown = value(output)
    return [dict(zip(shown["headers"], row)) for row in shown["data"]]


def test_evaluate_matches_the_command_line(client, capsys):
    from gradio_client import handle_file
    files = [SAMPLE_TESTSET / name for name in ("testingset.npy", "testing_labels.npy", "testing_sources.npy")]
    shown = evaluate(client, "upload", *[handle_file(str(f)) for f in files], models=["fcn", "cnn"], percentile=95.0)
    main(["evaluate", "--checkpoint", str(ROOT / "checkpoints" / "fcn"), str(ROOT / "checkpoints" / "cnn"),
          "--images", str(files[0]), "--labels", str(files[1]), "--sources", str(files[2]), "--json",
          "--threshold-percentile", "95"])
    expected = json.loads(capsys.readouterr().out)
    ranking = {(row["model"], row["images"]): row for row in table(shown["ranking"])}
    for name in ("fcn", "cnn"):
        for subset, title in (("overall", "all"), ("CIFAR-10", "normal vs CIFAR-10"), ("UTKFace", "normal vs UTKFace")):
            row = ranking[name, title]
            assert row["ROC-AUC"] == pytest.approx(expected[name]["roc_auc"][subset], abs=1e-4)
            assert row["average precision"] == pytest.approx(expected[name]["average_precision"][subset], abs=1e-4)
            assert row["caught at 1% FPR"] == pytest.approx(expected[name]["tpr_at_1%_fpr"][subset], abs=1e-4)
    at = {row["model"]: row for row in table(shown["at_threshold"])}
    for name in ("fcn", "cnn"):
        cli = expected[name]["at_threshold"]
        assert (at[name]["TP"], at[name]["FP"], at[name]["TN"], at[name]["FN"]) == (
            cli["true_positives"], cli["false_positives"], cli["true_negatives"], cli["false_negatives"])
        assert at[name]["F1"] == pytest.approx(cli["f1"], abs=1e-4)
    files = value(shown["files"])
    assert Path(files[0]).name == "evaluation.zip" and len(zipfile.ZipFile(files[0]).namelist()) == 4
    submission = next(f for f in files if Path(f).name == "submission_fcn.csv")
    assert Path(submission).read_text().startswith("ID,score\n")


def test_evaluate_on_the_bundled_sample_names_the_sources(client):
    shown = evaluate(client, "bundled sample", None, None, None, models=SHIPPED)
    assert {row["images"] for row in table(shown["ranking"])} == {"all", "normal vs CIFAR-10", "normal vs UTKFace"}
    assert "60 normal, 40 anomalous (CIFAR-10: 20, UTKFace: 20)" in shown["overview"]
    assert "Model agreement" in shown["overview"] and len(table(shown["agreement"])) == len(SHIPPED)
    assert all(", CIFAR-10: score" in item["caption"] or ", UTKFace: score" in item["caption"]
               for item in value(shown["flagged"])[:5])  # the most anomalous, named by kind


def test_the_tabs_describe_the_bundled_sample_from_its_files():
    from ad.ui.uploads import sample_summary
    summary = sample_summary(SAMPLE_TESTSET)
    labels = np.load(SAMPLE_TESTSET / "testing_labels.npy")
    assert (summary.images, summary.normal) == (len(labels), int((labels == 0).sum()))
    assert summary.text == f"{len(labels)} labelled images ({summary.normal} normal faces, 20 CIFAR-10, 20 UTKFace)"
    assert sample_summary(None) is None


def test_evaluate_without_labels_ranks_flags_and_writes_the_csvs(client):
    from gradio_client import handle_file
    shown = evaluate(client, "upload", handle_file(str(SAMPLE_TESTSET / "testingset.npy")), None, None,
                     models=["fcn"], percentile=90.0)
    assert "No labels" in shown["overview"] and shown["ranking"]["visible"] is False
    ranked = table(shown["ranked"])
    scores = [row["score"] for row in ranked]
    assert scores == sorted(scores, reverse=True) and len(ranked) == 100
    flagged = table(shown["at_threshold"])[0]["flagged"]
    assert sum(row["verdict"] == "anomalous" for row in ranked) == flagged
    assert all(row["verdict"] == verdict(row["percentile"], 90.0) for row in ranked if abs(row["percentile"] - 90) > 0.01)
    details = Path(next(f for f in value(shown["files"]) if Path(f).name == "scores_fcn.csv")).read_text().splitlines()
    assert details[0] == "ID,file,score,percentile,verdict" and len(details) == 101
    assert len(value(shown["flagged"])) == GALLERY_SIZE and shown["false_positives"]["visible"] is False
    with pytest.raises(Exception, match="needs labels"):
        evaluate(client, "upload", handle_file(str(SAMPLE_TESTSET / "testingset.npy")), None, None,
                 models=["fcn"], mode=BEST_F1)


def test_evaluate_reports_mismatched_labels(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    np.save(tmp_path / "short.npy", np.zeros(5, np.uint8))
    with pytest.raises(AppError, match="5 labels for 100 images"):
        evaluate(client, "upload", handle_file(str(SAMPLE_TESTSET / "testingset.npy")),
                 handle_file(str(tmp_path / "short.npy")), None, models=["fcn"])


def mvtec_zip(folder, masks=True, top="parts/", drop=None):
    """12 normal discs and 12 with a painted flaw in MVTec AD's layout (test/good, test/patch,
    ground_truth/patch/<name>_mask.png), zipped inside one folder as a visitor would; `drop`: a file
    left out. Returns (the zip, the test/ folder it was made of)."""
    flawed, flaws = add_flaws(make_images(12, "normal", seed=6), seed=6)
    test = write_mvtec(folder / "parts", make_images(12, "normal", seed=5), flawed, flaws)
    files = sorted(p for p in test.parent.rglob("*.png") if masks or "ground_truth" not in p.parts)
    with zipfile.ZipFile(folder / "parts.zip", "w") as archive:
        archive.writestr("parts/train/good/000.png", (test / "good" / "000.png").read_bytes())  # never a test image
        for file in files:
            if file.relative_to(test.parent).as_posix() != drop:
                archive.write(file, top + file.relative_to(test.parent).as_posix())
    return folder / "parts.zip", test


def test_evaluate_a_zip_with_masks_shows_pixel_metrics_and_the_heat_maps_against_the_defects(client, tmp_path):
    from gradio_client import handle_file
    shown = evaluate(client, "upload", handle_file(str(mvtec_zip(tmp_path)[0])), None, None, models=["fcn"])
    assert "12 normal, 12 anomalous (patch: 12)" in shown["overview"]  # train/good left out
    rows = table(shown["ranking"])
    assert [row["images"] for row in rows] == ["all", "normal vs patch"]
    assert all(0 <= row[column] <= 1 for row in rows for column in ("pixel ROC-AUC", "pixel AUPRO"))
    defects = value(shown["defects"])
    assert shown["defects"]["visible"] is True and len(defects) == 12  # every anomalous image, worst found first
    found = [float(item["caption"].rsplit("pixel ROC-AUC ", 1)[1]) for item in defects]
    assert found == sorted(found) and all(item["caption"].startswith("patch/") for item in defects)
    with Image.open(defects[0]["image"]) as picture:
        assert picture.size == (DISPLAY_SIZE, DISPLAY_SIZE)


def test_evaluate_a_zip_without_masks_as_before_and_a_bad_mask_set_by_its_files_names(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    plain, _ = mvtec_zip(tmp_path / "plain", masks=False, top="")
    shown = evaluate(client, "upload", handle_file(str(plain)), None, None, models=["fcn"])
    assert "pixel ROC-AUC" not in value(shown["ranking"])["headers"] and shown["defects"]["visible"] is False
    assert [row["images"] for row in table(shown["ranking"])] == ["all", "normal vs patch"]
    for drop, message in (("ground_truth/patch/003_mask.png", "patch/003.png: an anomalous image without a mask; "
                           "expected parts.zip/parts/ground_truth/patch/003.png or "
                           "parts.zip/parts/ground_truth/patch/003_mask.png"),
                          ("test/patch/005.png", "parts.zip/parts/ground_truth: 1 mask files match no test image "
                           "(patch/005_mask.png)")):
        broken, _ = mvtec_zip(tmp_path / drop.replace("/", "-"), drop=drop)
        with pytest.raises(AppError) as refused:
            evaluate(client, "upload", handle_file(str(broken)), None, None, models=["fcn"])
        assert message in str(refused.value) and "/tmp" not in str(refused.value)


def test_evaluate_reads_the_set_at_each_models_input_format_and_the_threshold_calls_no_model(
        trained, data_files, tmp_path, capsys, monkeypatch):
    import gradio as gr

    from ad.training import train
    shutil.copytree(trained("fcn"), tmp_path / "zoo" / "fcn")  # 64 px, the centre square
    train(train_config(data_files, tmp_path / "zoo" / "whole", "fcn", epochs=2, image_size=32, fit="whole"))
    handlers = build_demo(load_zoo(model_sources(tmp_path / "zoo", hub_ids=""))).handlers
    ui, (upload, test) = handlers.page.evaluate, mvtec_zip(tmp_path)
    shown = handlers.evaluate("upload", str(upload), None, None, ["fcn", "whole"], progress=lambda *a, **k: None)
    run = handlers.evaluations.get(shown[ui.run])
    assert [run.images(name).shape[1:] + run.test_sets[name].masks.shape[1:] for name in ("fcn", "whole")] == [
        (64, 64, 3, 64, 64), (32, 32, 3, 32, 32)]
    ranking = shown[ui.ranking].value
    column = ranking["headers"].index("pixel ROC-AUC")
    capsys.readouterr()  # training's lines
    main(["evaluate", "--checkpoint", str(tmp_path / "zoo" / "fcn"), "--images", str(test), "--json"])
    expected = json.loads(capsys.readouterr().out)["fcn"]["pixel_roc_auc"]["overall"]
    assert ranking["data"][0][:2] == ["fcn", "all"] and ranking["data"][0][column] == pytest.approx(expected, abs=1e-4)
    pictures = run.defect_pictures("whole")
    assert len(pictures) == 12 and all(picture.shape == (DISPLAY_SIZE, DISPLAY_SIZE, 3) for picture, _ in pictures)
    assert all((picture == REGION_COLOUR).all(axis=-1).any() for picture, _ in pictures)  # the true defect outlined
    assert all(m.dtype == np.float16 for _, _, m in run.defects["whole"])  # only the shown maps kept, small

    def no_model(*args, **kwargs):
        raise AssertionError("a model was called")
    monkeypatch.setattr("ad.ui.stored_run.explain_all", no_model)
    monkeypatch.setattr("ad.ui.stored_run.anomaly_scores", no_model)
    for model in run.models.values():
        monkeypatch.setattr(model, "explain", no_model)
        monkeypatch.setattr(model, "score", no_model)
    moved = handlers.at_threshold(shown[ui.run], PERCENTILE, 90.0, "whole")
    assert len(moved[ui.flagged]) == GALLERY_SIZE
    gallery = handlers.defect_gallery(shown[ui.run], "whole")
    assert isinstance(gallery, gr.Gallery) and len(gallery.value) == 12 and "by whole" in gallery.label


def test_a_file_that_is_not_an_image_gets_a_clear_message(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    (tmp_path / "fake.png").write_text("not a picture")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(tmp_path / "fake.png")), "fcn", 99.0, api_name="/detect")
    # and the app keeps serving
    assert client.predict(handle_file(str(ROOT / "examples/images/normal_celeba_1.png")), "fcn", 99.0,
                          api_name="/detect")[5]["score"] > 0


def test_messages_name_the_uploaded_file_never_a_server_path(client, tmp_path, capfd, caplog):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    (tmp_path / "notes.npy").write_text("not an array")
    with pytest.raises(AppError) as refused:
        evaluate(client, "upload", handle_file(str(tmp_path / "notes.npy")), None, None, models=["fcn"])
    assert "notes.npy" in str(refused.value) and "/tmp" not in str(refused.value) and "gradio" not in str(refused.value)
    assert "Traceback" not in capfd.readouterr().err
    logged = [r.getMessage() for r in caplog.records if r.name == "ad.app"]
    assert len(logged) == 1 and logged[0].startswith("refused in evaluate: notes.npy")  # one line per user error


def test_agents_find_detect_and_compare_as_mcp_tools_and_get_a_verdict_as_data(app_url, pngs):
    import asyncio
    import base64

    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    tools = {tool["name"]: tool for tool in httpx.get(f"{app_url}gradio_api/mcp/schema", timeout=30).json()}
    assert {"detect", "compare"} <= set(tools)
    assert "how anomalous one image is" in tools["detect"]["description"]
    assert "model_name" in tools["detect"]["inputSchema"]["properties"]
    image = "data:image/png;base64," + base64.b64encode(Path(pngs[CIFAR][0]).read_bytes()).decode()

    async def call():
        async with streamablehttp_client(f"{app_url}gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await session.call_tool("detect", {"image_path": image, "model_name": "geo",
                                                          "threshold_percentile": 99})
    answer = " ".join(getattr(item, "text", "") for item in asyncio.run(call()).content)
    assert "'verdict': 'anomalous'" in answer and "'percentile':" in answer and "'score':" in answer


def test_latent_sliders_decode_what_they_encode(client, pngs):
    from gradio_client import handle_file
    decoded, note, *sliders = client.predict(handle_file(pngs[NORMAL][0]), "fcn", api_name="/encode")
    assert "fcn: 16 latent dimensions" in note
    values = [s["value"] if isinstance(s, dict) else s for s in sliders]
    moved = client.predict(*values[:3], *[-v for v in values[3:]], api_name="/decode")
    assert Image.open(moved).size == (DISPLAY_SIZE, DISPLAY_SIZE)
    assert not np.array_equal(np.asarray(Image.open(decoded)), np.asarray(Image.open(moved)))


def test_a_model_without_a_latent_code_is_refused_by_name_over_the_api(client, pngs):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    latent = [name for name in list_models() if model_class(name).has_latent]
    with pytest.raises(AppError, match=f"geo has no latent code to explore; choose one of {', '.join(latent)}$"):
        client.predict(handle_file(pngs[NORMAL][0]), "geo", api_name="/encode")


def test_a_broken_checkpoint_is_reported_and_the_others_keep_working(tmp_path, pngs):
    shutil.copytree(ROOT / "checkpoints" / "fcn", tmp_path / "fcn")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"architecture": "fcn"}')
    zoo = load_zoo(model_sources(tmp_path, hub_ids=""))
    assert list(zoo.models) == ["fcn"] and "no model.safetensors" in zoo.errors["broken"]
    demo = build_demo(zoo)  # no examples, no sample test set: the app still builds
    assert "no model.safetensors" in str(demo.get_config_file())
    handlers = demo.handlers
    assert handlers.detect(pngs[NORMAL][0], "fcn")[handlers.page.detect.details]["score"] > 0


@contextlib.contextmanager
def browser_page(url, width=1400):
    """A page of the app in Debian's Chromium, driven by Playwright: a laptop, or a phone at 390 px."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": width, "height": 1100 if width > 600 else 844})
        page.goto(url)
        yield page
        browser.close()


def refuse_an_empty_zip(page, drop_zone, button=None):
    """Upload a zip without images (and press `button`): one message, naming the file as uploaded."""
    from playwright.sync_api import expect
    empty = Path(tempfile.mkdtemp(prefix="upload-")) / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    page.locator(f"{drop_zone} input[type=file]").set_input_files(str(empty))
    if button:
        page.locator(button).click()
    message = page.locator(".toast-body")
    expect(message).to_contain_text("empty.zip: the zip holds no images", timeout=30_000)
    page.wait_for_timeout(500)  # a second message would be there by now
    expect(message).to_have_count(1)  # one error, one message
    assert "/tmp" not in message.inner_text() and "ad-upload" not in message.inner_text()
    message.get_by_role("button").first.click()  # closed, as a visitor would


def count_model_calls(monkeypatch):
    import ad.ui.handlers
    calls, real = [], ad.ui.handlers.detect
    monkeypatch.setattr(ad.ui.handlers, "detect", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.parametrize("width", [1400, 390])
def test_browser_an_example_answers_by_itself_and_the_threshold_judges_again_without_the_model(
        app_url, width, monkeypatch):
    from playwright.sync_api import expect
    calls = count_model_calls(monkeypatch)
    with browser_page(app_url, width) as page:
        expect(page.get_by_role("tab")).to_have_count(5)  # every tab in the bar, none behind a menu
        page.locator("img[src*='anomaly_utkface_1']:visible").first.click()  # geo: the 95th percentile
        summary = page.locator("#summary")
        expect(summary).to_contain_text("NORMAL", timeout=60_000)  # no button pressed
        for element in ("#input-view", "#reconstruction", "#heat-map", "#overlay"):
            expect(page.locator(f"{element} img")).to_be_visible(timeout=30_000)
        assert "More unusual than 95.0% of the normal images geo was checked against" in summary.inner_text()
        button = page.get_by_role("button", name="Detect", exact=True).bounding_box()
        verdict = summary.bounding_box()
        assert 0 <= verdict["y"] - (button["y"] + button["height"]) < 60  # the verdict right under the button
        viewport = page.viewport_size
        for shown in (summary, page.locator("#heat-map")):  # the answer in the first screen, examples or not
            box = shown.bounding_box()
            assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], (shown, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], (shown, box)
        called = len(calls)
        page.locator("#detect-threshold input[type=number]").fill("90")
        page.locator("#detect-threshold input[type=number]").press("Enter")
        expect(summary).to_contain_text("ANOMALOUS", timeout=30_000)
        assert len(calls) == called  # judged again from the score on screen


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_browser_on_a_phone_the_decoded_face_stays_in_view_while_the_last_slider_moves(app_url):
    from playwright.sync_api import expect
    with browser_page(app_url, 390) as page:
        page.get_by_role("tab", name="Latent").click()
        page.locator("img[src*='normal_celeba_1']:visible").first.click()  # encodes by itself
        expect(page.locator("#latent-decoded img")).to_be_visible(timeout=60_000)
        page.locator("#latent-decoded").evaluate("e => e.parentElement.scrollIntoView()")  # the results at the top
        sliders = page.locator("#latent-sliders").bounding_box()
        page.mouse.move(sliders["x"] + 20, sliders["y"] + sliders["height"] / 2)
        page.mouse.wheel(0, sliders["height"] * 4)  # a thumb on the sliders scrolls their box to the last one
        last = page.get_by_label("z[15]").first
        expect(last).to_be_in_viewport(ratio=1)
        last.fill("2")
        for shown in (page.locator("#latent-decoded"), last):
            box = shown.bounding_box()
            assert box["y"] >= 0 and box["y"] + box["height"] <= 844, (shown, box)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_browser_switching_model_answers_again_and_a_bad_file_clears_the_old_verdict(app_url, pngs, tmp_path):
    from playwright.sync_api import expect
    with browser_page(app_url) as page:
        page.locator("input[type=file]").first.set_input_files(pngs[CIFAR][0])
        summary, picture = page.locator("#summary"), page.locator("#reconstruction")
        expect(summary).to_contain_text("ANOMALOUS", timeout=60_000)
        expect(picture).to_contain_text("views it judged")
        page.get_by_label("Model", exact=True).first.click()
        page.get_by_role("option", name="fcn: fully connected autoencoder").click()
        expect(picture).to_contain_text("Reconstruction", timeout=30_000)  # the title follows the model
        expect(summary).to_contain_text("images fcn was checked against", timeout=60_000)  # and so does the answer
        (tmp_path / "fake.png").write_text("not a picture")
        page.locator("#detect-image input[type=file]").set_input_files(str(tmp_path / "fake.png"))
        expect(page.get_by_text("not an image this app can read").first).to_be_visible(timeout=30_000)
        expect(summary).not_to_contain_text("ANOMALOUS")  # the old verdict is gone
        expect(page.locator("#heat-map img")).to_have_count(0)
        assert "/tmp" not in page.get_by_text("not an image this app can read").first.inner_text()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_browser_threshold_moves_the_figures_without_scoring_again(app_url, monkeypatch):
    from playwright.sync_api import expect

    import ad.ui.stored_run
    calls, real = [], ad.ui.stored_run.anomaly_scores  # where the Evaluate tab scores
    monkeypatch.setattr(ad.ui.stored_run, "anomaly_scores", lambda *a, **k: calls.append(1) or real(*a, **k))
    with browser_page(app_url) as page:
        page.get_by_role("tab", name="Evaluate").click()
        page.get_by_role("radio", name="upload").check()
        refuse_an_empty_zip(page, "#evaluate-images", "#evaluate-button")
        button = page.locator("#evaluate-button")
        expect(button).to_be_enabled(timeout=30_000)  # the button comes back after the error
        for shown in ("#evaluate-models", "#evaluate-overview", "#evaluate-images"):
            expect(page.locator(shown)).not_to_contain_text("Error")  # no red badge over inputs or outputs
        page.get_by_role("radio", name="bundled sample").check()
        button.click()  # and the page works on: no reload
        confusion, histograms = page.locator("#confusion"), page.locator("#histograms img")
        expect(confusion).to_contain_text("called anomalous", timeout=60_000)
        scored, before, picture = len(calls), confusion.inner_text(), histograms.get_attribute("src")
        assert scored == len(SHIPPED)
        page.locator("#evaluate-threshold input[type=number]").fill("60")
        page.locator("#evaluate-threshold input[type=number]").press("Enter")
        expect(confusion).not_to_have_text(before, timeout=30_000)
        expect(histograms).not_to_have_attribute("src", picture, timeout=30_000)
        assert len(calls) == scored  # the threshold reuses the scores: no model ran again
        page.get_by_label(f"Thumbnail 1 of {GALLERY_SIZE}").first.click()  # an image opens in Detect, judged there
        expect(page.locator("#summary")).to_contain_text("anomaly score", timeout=60_000)
        page.get_by_role("tab", name="Evaluate").click()  # a normal image flagged at 60 is anomalous in Detect at 60
        page.locator("#evaluate-false-positives").get_by_label(re.compile("^Thumbnail 1 of")).click()
        summary, threshold = page.locator("#summary"), page.locator("#detect-threshold input[type=number]")
        expect(threshold).to_have_value("60", timeout=30_000)
        expect(summary).to_contain_text("ANOMALOUS", timeout=60_000)
        expect(summary).to_contain_text("the threshold is the 60th percentile")
        box = summary.bounding_box()  # the page shows the verdict, not its bottom
        assert box["y"] >= 0 and box["y"] + box["height"] <= page.viewport_size["height"], box


def test_concurrent_clients_all_get_answers(app_url, pngs):
    from gradio_client import Client, handle_file
    results, errors = [], []

    def user(index):
        try:
            client = Client(app_url, verbose=False)
            for call in range(3):
                path = pngs[CIFAR if (index + call) % 2 else NORMAL][call]
                results.append(client.predict(handle_file(path), "fcn", 99.0, api_name="/detect")[5])
        except Exception as e:  # noqa: BLE001 - any failure is what this test looks for
            errors.append(repr(e))

    threads = [threading.Thread(target=user, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and len(results) == 12, errors[:3]


def test_a_full_queue_refuses_politely_and_the_app_keeps_serving(pngs):
    from gradio_client import Client, handle_file
    demo = build_demo(load_zoo({"cnn": str(ROOT / "checkpoints" / "cnn")}), queue_size=2)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        jobs = [client.submit(handle_file(pngs[NORMAL][0]), 99.0, api_name="/compare") for _ in range(12)]
        outcomes = []
        for job in jobs:
            try:
                job.result(timeout=300)
                outcomes.append("ok")
            except Exception as e:  # noqa: BLE001
                outcomes.append(str(e))
        refused = [o for o in outcomes if o != "ok"]
        assert "ok" in outcomes and refused, outcomes
        assert all("queue is full" in o.lower() for o in refused), refused
        assert client.predict(handle_file(pngs[NORMAL][0]), 99.0, api_name="/compare")[1]["data"]
    finally:
        demo.close()


@pytest.mark.parametrize("path", ["/etc/passwd", str(ROOT / "ad" / "data.py"),
                                  str(ROOT / "checkpoints" / "fcn" / "config.json")])
def test_the_app_serves_no_files_but_its_own_outputs(app_url, path):
    import httpx
    response = httpx.get(f"{app_url}gradio_api/file={path}", timeout=30)
    assert response.status_code in (403, 404), response.status_code


def test_uploads_over_the_size_limit_are_refused_and_a_full_hw8_test_set_fits():
    import httpx

    import app
    assert app.MAX_UPLOAD_MB * 1024 * 1024 > 19_636 * 64 * 64 * 3 + 128  # testingset.npy, header included
    demo = build_demo(load_zoo({}))  # the limit as app.py sets it, at 1 MB: sending 300 MB takes a while
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=app.MAX_UPLOAD.replace(str(app.MAX_UPLOAD_MB), "1"))
    try:
        files = {"files": ("big.npy", b"\0" * (2 * 1024 * 1024), "application/octet-stream")}
        response = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload", files=files, timeout=60)
        assert response.status_code == 413
    finally:
        demo.close()


def test_zero_gpu_spaces_get_the_gpu_work_wrapped(monkeypatch):
    import importlib
    import types

    import ad.ui.handlers
    wrapped = []
    fake_spaces = types.ModuleType("spaces")
    fake_spaces.GPU = lambda function: wrapped.append(function.__name__) or function
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces)
    try:
        importlib.reload(ad.ui.handlers)
        assert {"detect", "compare", "evaluate"} <= set(wrapped)
    finally:
        monkeypatch.delitem(sys.modules, "spaces")
        importlib.reload(ad.ui.handlers)  # back to the plain functions
    assert ad.ui.handlers.on_gpu(len) is len


# ---------------------------------------------------------------- the Train tab


@pytest.fixture(scope="module")
def faces_zip(tmp_path_factory):
    """The bundled sample's 60 normal faces as a zip of PNGs, as a visitor would bring them."""
    path = tmp_path_factory.mktemp("train") / "faces.zip"
    images, labels = np.load(SAMPLE_TESTSET / "testingset.npy"), np.load(SAMPLE_TESTSET / "testing_labels.npy")
    with zipfile.ZipFile(path, "w") as archive:
        for i, image in enumerate(images[labels == 0]):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            archive.writestr(f"faces/{i:03d}.png", buffer.getvalue())
    return path


def test_a_model_trained_in_the_app_detects_for_its_visitor_only(client, app_url, faces_zip, pngs):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    name, status, *_ = client.predict([handle_file(str(faces_zip))], "geo", 1, api_name="/train")
    assert name == "my-geo-1" and "is ready" in status
    details = client.predict(handle_file(pngs[CIFAR][0]), name, 99.0, api_name="/detect")[5]
    assert details["model"] == name and details["verdict"] == verdict(details["percentile"], 99.0)
    normal = client.predict(handle_file(pngs[NORMAL][0]), name, 99.0, api_name="/detect")[5]
    assert normal["score"] < details["score"]  # trained on faces: a face is less anomalous than a rooster
    stranger = Client(app_url, verbose=False)
    with pytest.raises(AppError, match="'my-geo-1' is not available"):
        stranger.predict(handle_file(pngs[CIFAR][0]), name, 99.0, api_name="/detect")


def test_bad_training_uploads_are_refused_and_the_app_keeps_serving(client, tmp_path, faces_zip, monkeypatch):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr("notes/a.txt", "hello")
    with pytest.raises(AppError, match="the zip holds no images"):
        client.predict([handle_file(str(tmp_path / "notes.zip"))], "geo", 1, api_name="/train")
    monkeypatch.setattr("ad.ui.uploads.MAX_TRAIN_IMAGES", 50)
    with pytest.raises(AppError, match="60 images; the app trains on at most 50"):
        client.predict([handle_file(str(faces_zip))], "geo", 1, api_name="/train")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(AppError, match="Invalid file type.*zip.*npy.*image"):
        client.predict([handle_file(str(tmp_path / "x.csv"))], "geo", 1, api_name="/train")
    assert client.predict(handle_file(str(ROOT / "examples/images/normal_celeba_1.png")), "fcn", 99.0,
                          api_name="/detect")[5]["score"] > 0


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_browser_train_then_detect_with_the_new_model(app_url, faces_zip, pngs):
    from playwright.sync_api import expect
    with browser_page(app_url) as page:
        page.get_by_role("tab", name="Train").click()
        refuse_an_empty_zip(page, "#train-files")
        for shown in ("#train-files", "#train-epochs", "#train-shown", "#train-loss"):
            expect(page.locator(shown)).not_to_contain_text("Error")  # no red badge left behind
        page.locator("#train-files input[type=file]").set_input_files(str(faces_zip))
        # the refused zip went: the new upload replaces it instead of joining it ("not a mix")
        expect(page.locator("#train-report")).to_contain_text("60 images", timeout=60_000)
        page.locator("#train-epochs input").fill("2")  # a short run: the tab's lengths are for real use
        page.locator("#train-button").click()
        expect(page.locator("#train-status")).to_contain_text("is ready", timeout=120_000)
        loss = page.locator("#train-loss img")  # the loss curve, drawn where a person sees it
        expect(loss).to_be_visible()
        box = loss.bounding_box()
        assert box["width"] > 200 and box["height"] > 100
        drawn = Image.open(io.BytesIO(loss.screenshot())).convert("RGB")
        assert len(drawn.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 16  # curves and labels, not a blank
        page.get_by_role("tab", name="Detect").click()
        expect(page.get_by_label("Model", exact=True).first).to_have_value(re.compile("^my-geo-1: "))
        page.locator("input[type=file]").first.set_input_files(pngs[CIFAR][0])
        expect(page.locator("#summary")).to_contain_text("anomaly score", timeout=60_000)
        expect(page.locator("#summary")).to_contain_text("held-out normal images")  # how many placed the threshold
        page.reload()  # the visitor's model survives a reload of the page
        page.get_by_label("Model", exact=True).first.click()
        page.get_by_role("option", name=re.compile("^my-geo-1: ")).click()
        page.locator("img[src*='anomaly_cifar10_2']:visible").first.click()
        expect(page.locator("#summary")).to_contain_text("images my-geo-1 was checked against", timeout=60_000)
    with browser_page(app_url) as stranger:  # another browser: none of it
        stranger.get_by_label("Model", exact=True).first.click()
        expect(stranger.get_by_role("option", name=re.compile("^geo: "))).to_be_visible()
        expect(stranger.get_by_role("option", name=re.compile("^my-geo-1"))).to_have_count(0)


def test_the_caches_forget_the_least_recently_used_first():
    from ad.ui.lru import LRU
    kept = LRU(2)
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1  # a used: b is now the oldest
    kept.put("c", 3)
    assert (kept.get("a"), kept.get("b"), kept.get("c"), len(kept)) == (1, None, 3, 2)


def test_a_painted_face_goes_to_the_drop_zone_as_it_was_painted(pngs):
    from ad.ui.handlers import Handlers
    face = Image.open(pngs[NORMAL][0]).convert("RGBA")
    painted = face.copy()
    painted.paste((0, 0, 0, 255), (20, 20, 40, 30))  # sunglasses, roughly
    path = Handlers.painted_image({"background": face, "layers": [], "composite": painted})
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(painted.convert("RGB")))


@pytest.mark.parametrize("percentile, threshold, shown", [(99.04, 99.0, "99.04"), (98.96, 99.0, "99.0"),
                                                          (99.96, 99.9, "99.96"), (99.99, 99.9, "99.99"),
                                                          (0.04, 50.0, "0.04"), (100.0, 99.0, "100")])
def test_the_verdicts_sentence_never_contradicts_it(percentile, threshold, shown):
    from ad.ui.render import ordinal, percent, verdict_html
    assert percent(percentile, threshold) == shown
    html = verdict_html("fcn", verdict(percentile, threshold), 1.0, percentile, threshold)
    assert verdict(percentile, threshold).upper() in html and "100.0" not in html
    assert [ordinal(p) for p in (99, 91, 92, 93, 11, 99.9, 50)] == ["99th", "91st", "92nd", "93rd", "11th",
                                                                    "99.9th", "50th"]


def test_a_small_training_set_is_calibrated_on_enough_of_its_images_and_says_when_too_few():
    from ad.training import TrainConfig, calibration_warning, split_holdout
    from ad.ui.texts import plural
    assert len(split_holdout(300, TrainConfig.holdout, 0)[1]) == 75  # a quarter, not 15 (5%)
    assert len(split_holdout(1000, TrainConfig.holdout, 0)[1]) == 200
    assert len(split_holdout(10_000, TrainConfig.holdout, 0)[1]) == 500  # the shipped checkpoints' share
    assert "too few for percentile 99" in calibration_warning(75, 99.0)
    assert calibration_warning(75, 90.0) is None and calibration_warning(500, 99.0) is None
    assert calibration_warning(None, 99.0) is None  # not recorded (older checkpoints): nothing claimed
    assert (plural(1, "image"), plural(2, "image"), plural(1_000, "pass", "passes")) == (
        "1 image", "2 images", "1,000 passes")


def test_sessions_are_found_only_by_their_key_and_end_with_their_lifetime():
    from ad.ui.sessions import Sessions
    sessions = Sessions(lifetime=3600)
    key, session = sessions.new()
    assert sessions.get(key) is session and len(key) >= 32
    assert sessions.get("made-up") is None and sessions.get(None) is None and sessions.get({}) is None
    assert sessions.get_or_new("made-up")[0] != "made-up"  # a key naming no live session: a new one
    session["started"] -= 3601
    assert sessions.get(key) is None and not Path(session["folder"]).exists()  # its time is up: folder gone


def test_draw_a_defect_starts_on_a_normal_face():
    import app
    editor = app.demo.handlers.page.detect.editor
    assert "normal_" in Path(editor.value["background"]["path"]).name


def test_detect_outlines_a_flaw_and_the_threshold_moves_the_region_without_the_model(trained_on_texture, tmp_path,
                                                                                        monkeypatch):
    from PIL import Image
    handlers, calls = build_demo(load_zoo(model_sources(trained_on_texture.parent, hub_ids=""))).handlers, \
        count_model_calls(monkeypatch)
    ui = handlers.page.detect
    stained, _ = add_stains(make_textures(1, seed=3), seed=3)
    Image.fromarray(stained[0]).save(tmp_path / "stained.png")
    shown = handlers.detect(str(tmp_path / "stained.png"), "seg", 99.0)
    strict, overlay = shown[ui.details], shown[ui.overlay]
    assert 0 < strict["defect_share"] < 0.2 and "Defect region" in shown[ui.verdict]
    assert (overlay == REGION_COLOUR).all(axis=-1).any()  # outlined on the overlay
    called = len(calls)
    loose = handlers.rejudge(strict, 60.0)
    assert len(calls) == called  # judged again from the kept detection, no model call
    assert loose[ui.details]["defect_share"] > strict["defect_share"]
    assert not (loose[ui.overlay] == overlay).all()
