"""The app's layout: one function per tab lays out its components and returns them by name (no
events there: ad.ui.events wires them to the handlers); `build_demo` puts the tabs together, after
making Gradio write its output pictures atomically."""

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from ad.files import atomic_path
from ad.models import list_models
from ad.training import TrainConfig
from ad.ui import events, render, sessions, texts
from ad.ui.handlers import LENGTHS, MAX_LATENT_SLIDERS, Handlers
from ad.ui.stored_run import BEST_F1, PERCENTILE, TABLE_ROWS
from ad.ui.uploads import IMAGE_FORMATS, sample_summary

# Phones (390 px): every tab in the bar (no "..." menu), tables that scroll on their own, and the
# latent tab's sliders in a box of their own that fits under the decoded image in one screen, so
# the image stays in view while the sliders scroll. Passed to demo.launch(css=...).
# A tab's results come before its examples there: the controls' column melts into its row
# (display: contents), so the results can be ordered between the verdict and the examples; pictures
# in pairs. Everywhere: a menu's text stops short of its arrow, a label short of its buttons.
CSS = """
@media (max-width: 640px) {
  .tab-container button { padding-left: 7px !important; padding-right: 7px !important; font-size: 15px !important; }
  #latent-sliders { max-height: 40vh; overflow-y: auto; }
  .results-first { flex-wrap: wrap !important; }
  .results-first > .controls { display: contents !important; }
  .results-first > .controls > *, .results-first > .results { flex: 1 1 100% !important; min-width: 100% !important; }
  .results-first > .results { order: 1; }
  .results-first > .controls > #verdict-chart, .results-first > .controls > .examples { order: 2; }
  .pair { flex-wrap: nowrap !important; }
  .pair > * { min-width: 0 !important; flex: 1 1 0 !important; height: auto !important; }
  .results label[data-testid=block-label].float { position: static !important; max-width: 100%; margin-bottom: 4px; }
}
.table-wrap, .table-container { overflow-x: auto; }
input[role=combobox] { text-overflow: ellipsis; padding-right: 22px !important; }
label[data-testid=block-label].float { max-width: calc(100% - 80px); }
"""

GALLERY = dict(columns=8, height="auto", object_fit="contain", format="png")  # Evaluate's rows of images
VIEW = dict(format="png", height=render.DISPLAY_SIZE, width=render.DISPLAY_SIZE, interactive=False,
            buttons=["download", "fullscreen"])


class RawImage(gr.Image):
    """An image drop zone that hands the uploaded file over untouched: ad.data converts it, so
    the app reads images exactly as the library does (EXIF, 16-bit, transparency) and reports
    unreadable files itself."""

    is_template = True  # rendered by the frontend as a plain gr.Image

    def preprocess(self, payload):
        return None if payload is None else payload.path


def drop_zone(upload_limit=None, elem_id=None, label="Image: drag and drop, upload, paste or take one with the webcam"):
    limit = f" ({IMAGE_FORMATS}; up to {upload_limit})" if upload_limit else ""
    return RawImage(label=label + limit, type="filepath", image_mode=None, sources=["upload", "clipboard", "webcam"],
                    height=280, elem_id=elem_id)


def threshold_slider(elem_id=None):
    return gr.Slider(50, 99.9, value=99.0, step=0.1, label="Verdict threshold: percentile of "
                     "held-out normal scores", info="Above it an image is called anomalous", elem_id=elem_id)


EXAMPLE_GROUPS = [("normal_", "Normal faces, like the ones the shipped models learned from"),
                  ("anomaly_utkface", "Other faces (UTKFace: babies, the elderly, other framing)"),
                  ("anomaly_cifar10", "Not faces (CIFAR-10 photos)")]


def example_images(folder):
    return sorted(str(p) for p in Path(folder).glob("*.png")) if folder and Path(folder).is_dir() else []


def example_groups(examples, image):
    """Examples grouped by what they are; clicking one fills the drop zone, which runs the model.
    In a column of their own, which a phone shows after the results (CSS)."""
    with gr.Column(elem_classes="examples"):
        for prefix, label in EXAMPLE_GROUPS:
            group = [path for path in examples if Path(path).name.startswith(prefix)]
            if group:
                gr.Examples(group, inputs=image, label=label, examples_per_page=len(group))
        others = [path for path in examples if not any(Path(path).name.startswith(p) for p, _ in EXAMPLE_GROUPS)]
        if others:
            gr.Examples(others, inputs=image, label="More examples", examples_per_page=len(others))


def detect_tab(zoo, examples, upload_limit):
    """The page opens with the most accurate model: its titles, legend and description."""
    best = texts.best_model(zoo.models)
    shown = zoo.models.get(best)
    normal_faces = [path for path in examples if Path(path).name.startswith("normal_")] or examples
    with gr.Row(elem_classes="results-first"):
        with gr.Column(scale=1, min_width=300, elem_classes="controls"):
            # custom values: a visitor's own trained models are theirs alone, not in the page's list
            model = gr.Dropdown(texts.choice_labels(zoo.models), value=best, label="Model", allow_custom_value=True,
                                info="What it is, and its ROC-AUC on the test set it was evaluated on",
                                elem_id="detect-model")
            image = drop_zone(upload_limit, "detect-image")
            threshold = threshold_slider("detect-threshold")
            button = gr.Button("Detect", variant="primary")
            verdict = gr.HTML(label="Verdict", elem_id="summary")
            chart = gr.Plot(label="Where this image falls among the held-out normal images", format="png",
                            elem_id="verdict-chart", show_label=False)
            if examples:
                example_groups(examples, image)
        with gr.Column(scale=2, elem_classes="results"):
            with gr.Row(elem_classes="pair"):
                seen = gr.Image(label="Input, as the model sees it", elem_id="input-view", **VIEW)
                picture = gr.Image(label=shown.picture_label if shown else "The model's picture",
                                   elem_id="reconstruction", **{**VIEW, "width": None})
            note = gr.Markdown(elem_id="what-it-sees", label="What the model reads")
            with gr.Row(elem_classes="pair"):
                heat = gr.Image(label=f"Heat map. {shown.heat_title}" if shown else "Heat map",
                                elem_id="heat-map", **VIEW)
                overlay = gr.Image(label="Heat map over the input", elem_id="overlay", **VIEW)
            legend = gr.Image(render.legend(shown) if shown else None, label="Heat map colours",
                              format="png", interactive=False, height=110, buttons=[])
            before_after = gr.ImageSlider(label=texts.before_after_label(shown) if shown else "Before and after",
                                          format="png", type="numpy", interactive=False, elem_id="before-after",
                                          max_height=320)
            with gr.Accordion("Draw a defect: paint over a normal face, then detect", open=False):
                editor = gr.ImageEditor(normal_faces[0] if normal_faces else None, type="pil", image_mode="RGB",
                                        label="Paint sunglasses, a scribble or a blot; the heat map should find it",
                                        sources=["upload", "clipboard"], canvas_size=(256, 256), fixed_canvas=True,
                                        brush=gr.Brush(default_size=12, colors=["#000000", "#ffffff", "#d62728",
                                                                                "#1f77b4", "#2ca02c"]),
                                        elem_id="defect-editor", layers=False, format="png")
                with gr.Row():
                    from_current = gr.Button("Start from the image above", size="sm")
                    painted = gr.Button("Detect the painted image", variant="primary", size="sm",
                                        elem_id="detect-painted")
            with gr.Accordion("How this model scores and what its heat map shows", open=False):
                about = gr.Markdown(texts.about(shown) if shown else "", label="About the model")
                details = gr.JSON(label="Details")
    answer = [seen, picture, heat, overlay, verdict, details, chart, note, before_after]  # /detect's, in order
    return SimpleNamespace(model=model, image=image, threshold=threshold, button=button, verdict=verdict, chart=chart,
                           seen=seen, picture=picture, note=note, heat=heat, overlay=overlay, legend=legend,
                           before_after=before_after, editor=editor, from_current=from_current, painted=painted,
                           about=about, details=details, answer=answer)


def compare_tab(examples, upload_limit):
    with gr.Row(elem_classes="results-first"):
        with gr.Column(scale=1, min_width=300, elem_classes="controls"):
            image = drop_zone(upload_limit)
            threshold = threshold_slider("compare-threshold")
            button = gr.Button("Compare all models", variant="primary")
            agreement = gr.Markdown(elem_id="compare-agreement", label="Agreement")
            if examples:
                example_groups(examples, image)
        with gr.Column(scale=2, elem_classes="results"):
            table = gr.Dataframe(label="Per model: percentile among its own normal images (comparable across "
                                 "models), verdict, raw score (not comparable); the ensemble's percentile is the "
                                 "mean of theirs", interactive=False, elem_id="compare-table")
            sheet = gr.Image(label="Per model: input, heat map, overlay, and its own picture", format="png",
                             interactive=False, elem_id="compare-sheet", buttons=["download", "fullscreen"])
            legends = gr.Image(label="Heat map colours", format="png", interactive=False, buttons=[], height=200)
    with gr.Accordion("The figures as data", open=False):
        seen = gr.JSON(label="Per model: score, percentile, ROC-AUC")
    answer = [sheet, table, agreement, legends, seen]  # /compare's, in order
    return SimpleNamespace(image=image, threshold=threshold, button=button, agreement=agreement, table=table,
                           sheet=sheet, legends=legends, seen=seen, answer=answer)


def evaluate_tab(names, sample):
    """A test set scored once; the threshold then moves over the stored scores. `sample`: the bundled
    sample test set's SampleSummary, or None."""
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            dataset = gr.Radio(["bundled sample", "upload"] if sample else ["upload"],
                               value="bundled sample" if sample else "upload", label="Test set",
                               info=f"The sample: {sample.text}" if sample else None)
            with gr.Group(visible=not sample) as uploads:
                images = gr.File(label="Images: testingset.npy (N, 64, 64, 3) or a .zip of images (sub-folders good/ "
                                 "and one per kind of anomaly label them; MVTec AD's ground_truth/ adds defect masks)",
                                 file_types=[".npy", ".zip"], elem_id="evaluate-images")
                labels = gr.File(label="Labels (optional): .npy or .csv, 0 normal, 1 anomaly",
                                 file_types=[".npy", ".csv"])
                sources = gr.File(label="Kinds of image (optional): .npy or .csv of names", file_types=[".npy", ".csv"])
            models = gr.Dropdown(names, value=names, multiselect=True, allow_custom_value=True, label="Models",
                                 elem_id="evaluate-models")
            button = gr.Button("Evaluate", variant="primary", elem_id="evaluate-button")
        with gr.Column(scale=2):
            overview = gr.Markdown("Pick a test set and the models, then press Evaluate.", label="Summary",
                                   elem_id="evaluate-overview")
            ranking = gr.Dataframe(label="How well each model ranks anomalies above normal images (1 = perfectly)",
                                   interactive=False, visible=False)
            curves = gr.Plot(label="ROC and precision-recall curves", format="png", visible=False)
            agreement = gr.Dataframe(label="Model agreement: rank correlation of their scores", interactive=False,
                                     visible=False)
    with gr.Row():
        mode = gr.Radio([PERCENTILE, BEST_F1], value=PERCENTILE, label="Threshold",
                        info="A percentile of each model's held-out normal scores, or the threshold with the "
                        "best F1 on this test set's labels")
        percentile = threshold_slider("evaluate-threshold")
        inspected = gr.Dropdown([], label="Model to inspect", info="for the confusion matrix, the images and the table")
    with gr.Column(visible=False) as results:  # shown by the first run: no empty headers before it
        with gr.Row():
            at_threshold = gr.Dataframe(label="At the threshold, per model", interactive=False,
                                        elem_id="at-threshold", scale=3)
            confusion = gr.Dataframe(label="Confusion matrix", interactive=False, visible=False, elem_id="confusion",
                                     scale=1, min_width=280)
        histograms = gr.Plot(label="Score histograms, the threshold dashed", format="png", elem_id="histograms")
        flagged = gr.Gallery(label="The most anomalous images (click one to open it in Detect)",
                             elem_id="evaluate-flagged", **GALLERY)
        false_positives = gr.Gallery(label="Normal images flagged (false positives), worst first",
                                     elem_id="evaluate-false-positives", visible=False, **GALLERY)
        false_negatives = gr.Gallery(label="Anomalies missed (false negatives), worst first", visible=False, **GALLERY)
        defects = gr.Gallery(label="Heat maps against the true defect", visible=False, **GALLERY)
        ranked = gr.Dataframe(label=f"Images by score, the {TABLE_ROWS:,} most anomalous (the CSVs hold every "
                              "image)", interactive=False, max_height=400)
        files = gr.File(label="Downloads: everything in one zip, then per model HW8's submission (ID,score) and "
                        "every image's score, percentile and verdict", file_count="multiple")
    run, shown = gr.State(), gr.State()  # the run's key on the server; the images in the galleries
    moving = [at_threshold, confusion, histograms, flagged, false_positives, false_negatives, ranked, shown]
    return SimpleNamespace(dataset=dataset, uploads=uploads, images=images, labels=labels, sources=sources,
                           models=models, button=button, overview=overview, ranking=ranking, curves=curves,
                           agreement=agreement, mode=mode, percentile=percentile, inspected=inspected, results=results,
                           at_threshold=at_threshold, confusion=confusion, histograms=histograms, flagged=flagged,
                           false_positives=false_positives, false_negatives=false_negatives, ranked=ranked,
                           defects=defects, files=files, run=run, shown=shown, moving=moving, answer=[
                               run, overview, ranking, curves, agreement, inspected, *moving, files, defects, results])


def latent_tab(names, examples):
    """Only models with a latent code (the autoencoders) have a space to explore."""
    gr.Markdown("Encode an image, then move its latent coordinates and watch the decoder answer. "
                "Small latents (the fully connected model's) are the easiest to read.")
    with gr.Row(elem_classes="results-first"):
        with gr.Column(scale=1, min_width=300, elem_classes="controls"):
            model = gr.Dropdown(names, value=names[0] if names else None, label="Model", allow_custom_value=True)
            image = drop_zone()
            button = gr.Button("Encode", variant="primary")
            if examples:
                example_groups(examples, image)
        with gr.Column(scale=2, elem_classes="results"):
            note = gr.Markdown(label="Latent dimensions")
            decoded = gr.Image(label="Decoded from the sliders", elem_id="latent-decoded", **VIEW)
            state = gr.State()  # the model's name and the whole code, sliders or not
            with gr.Row(elem_id="latent-sliders"):
                sliders = [gr.Slider(-3, 3, value=0, step=0.01, visible=False, min_width=180, label=f"z[{i}]")
                           for i in range(MAX_LATENT_SLIDERS)]
    return SimpleNamespace(model=model, image=image, button=button, note=note, decoded=decoded, state=state,
                           sliders=sliders, answer=[state, decoded, note, *sliders])


def train_tab(sample):
    """Bring normal images, train a detector on them, then use it in the other tabs. `sample`: the
    bundled sample test set's SampleSummary (its normal faces can be trained on), or None."""
    gr.Markdown("Train a detector on your own normal images: product photos, parts, cells, digits. It "
                "learns from normal images only, then joins the model choices of Detect, Compare and "
                f"Evaluate for you (no other visitor sees it) for {sessions.SESSION_SECONDS // 3600} hours, in "
                "this browser, reloads included. Download it to keep it.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            files = gr.File(label="Normal images: a .zip of images, several image files, or an .npy",
                            file_count="multiple", file_types=[".zip", ".npy", "image"], elem_id="train-files")
            use_sample = gr.Button(f"Use the sample faces ({sample.normal} images)" if sample else "",
                                   size="sm", visible=bool(sample))
            architecture = gr.Dropdown(list_models(), value=TrainConfig.arch, label="Architecture",
                                       info=f"{TrainConfig.arch}: the recommended general detector")
            length = gr.Radio(list(LENGTHS), value="quick", label="Training length",
                              info=", ".join(f"{k}: about {v} min" for k, v in LENGTHS.items())
                              + ", whatever the machine (a faster one trains more passes)")
            epochs = gr.Number(label="Passes over the images (set by the length; 0: the default)", precision=0,
                               minimum=0, maximum=500, value=0, elem_id="train-epochs")
            crop = gr.Textbox("", label="Crop box (optional): TOP,LEFT,HEIGHT,WIDTH on the 64x64 image",
                              placeholder="e.g. 16,16,32,32")
            name = gr.Textbox("", label="Name (optional)", placeholder="my-geo-1", max_length=40)
            with gr.Row():
                button = gr.Button("Train", variant="primary", elem_id="train-button")
                stop = gr.Button("Stop", variant="stop")
            status = gr.Markdown(elem_id="train-status", label="Training status")  # the progress, by the button
            trained_name = gr.Textbox(label="Trained model", interactive=False, elem_id="trained-name")
        with gr.Column(scale=2):
            report = gr.Markdown("Upload normal images (or use the sample faces) to train on.", elem_id="train-report")
            shown = gr.Gallery(label="Some of the images", columns=6, height="auto", object_fit="contain",
                               elem_id="train-shown")
            loss = gr.Plot(label="Loss per epoch", format="png", elem_id="train-loss")
            card = gr.Markdown(label="The trained model")
            download = gr.File(label="The checkpoint, as a zip (load_model and python -m ad take it as it is)")
            with gr.Accordion("Push to the Hugging Face Hub", open=False):
                repo = gr.Textbox(label="Repo id", placeholder="USER/NAME")
                token = gr.Textbox(label="Token (write access; used for this push only, never kept)", type="password")
                push = gr.Button("Push")
                pushed = gr.Markdown()
    return SimpleNamespace(files=files, use_sample=use_sample, architecture=architecture, length=length,
                           epochs=epochs, crop=crop, name=name, button=button, stop=stop, report=report, shown=shown,
                           trained_name=trained_name, status=status, loss=loss, card=card, download=download,
                           repo=repo, token=token, push=push, pushed=pushed)


def write_pictures_atomically():
    """Gradio caches each output picture under a name made of its bytes, and writes it in place even
    when the file exists: two visitors who get the same picture (an example, a cached detection)
    rewrite a file while a browser downloads it, and the download breaks off. Its copies of files
    are already atomic (a temporary name, then a rename); make its pictures so too."""
    from gradio import processing_utils

    if getattr(processing_utils.save_pil_to_cache, "atomic", False):
        return

    def save_pil_to_cache(img, cache_dir, name="image", format="webp"):
        data = processing_utils.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / processing_utils.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        if not path.exists():  # the name is the content: an existing file holds these very bytes
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        return str(path)

    save_pil_to_cache.atomic = True
    processing_utils.save_pil_to_cache = save_pil_to_cache


def build_demo(zoo, examples_dir=None, sample_testset=None, queue_size=64, upload_limit=None):
    """The app: `examples_dir` holds example PNGs, `sample_testset` a labelled set in HW8's layout,
    `upload_limit` the server's, as people read it ("300 MB"). The callbacks are `demo.handlers`."""
    write_pictures_atomically()
    handlers = Handlers(zoo, sample_testset)
    examples, sample = example_images(examples_dir), sample_summary(sample_testset)
    with gr.Blocks(title="Anomaly detection") as demo:
        gr.Markdown("# Anomaly detection\nEvery model here learned from normal images only (the shipped "
                    "ones from faces; the Train tab makes one from yours) and gives any image an anomaly "
                    "score: the higher, the less it looks like its normal images. Beside the score, each model "
                    "shows why, in its own terms: the title of each picture says what it shows for the model on "
                    "screen.")
        if zoo.errors:
            gr.Markdown("**Models that could not be loaded:**\n" + "\n".join(
                f"- `{name}`: {reason}" for name, reason in zoo.errors.items()), elem_id="load-errors")
        # the key of the visitor's own trained models (ad.ui.sessions), also kept in their browser for reloads
        session = gr.State(None)
        browser_key = gr.BrowserState(None, storage_key="anomaly-detection-session")
        with gr.Tabs() as tabs:
            with gr.Tab("Detect", id="detect"):
                detect = detect_tab(zoo, examples, upload_limit)
            with gr.Tab("Compare", id="compare"):
                compare = compare_tab(examples, upload_limit)
            with gr.Tab("Evaluate", id="evaluate"):
                evaluate = evaluate_tab(list(zoo.models), sample)
            with gr.Tab("Latent", id="latent"):
                latent = latent_tab(handlers.latent_names(), examples)
            with gr.Tab("Train", id="train"):
                train = train_tab(sample)
        handlers.page = SimpleNamespace(demo=demo, tabs=tabs, session=session, browser_key=browser_key,
                                        detect=detect, compare=compare, evaluate=evaluate, latent=latent, train=train)
        events.wire(handlers, handlers.page)
    demo.queue(max_size=queue_size, default_concurrency_limit=2)  # 2 vCPUs: more at once only queues
    demo.handlers = handlers  # for calls in-process (tests, benchmarks)
    return demo
