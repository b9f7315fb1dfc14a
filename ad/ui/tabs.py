"""The app's layout: one function per tab, and `build_demo` that wires events to the handlers."""

from pathlib import Path

import gradio as gr

from ad.ui import render
from ad.ui.handlers import MAX_LATENT_SLIDERS, Handlers

VIEW = dict(format="png", height=render.DISPLAY_SIZE, width=render.DISPLAY_SIZE, interactive=False,
            buttons=["download", "fullscreen"])


class RawImage(gr.Image):
    """An image drop zone that hands the uploaded file over untouched: ad.data converts it, so
    the app reads images exactly as the library does (EXIF, 16-bit, transparency) and reports
    unreadable files itself."""

    is_template = True  # rendered by the frontend as a plain gr.Image

    def preprocess(self, payload):
        return None if payload is None else payload.path


def drop_zone(label="Image: drag and drop, upload or paste"):
    return RawImage(label=label, type="filepath", image_mode=None, sources=["upload", "clipboard"],
                    height=280)


def threshold_slider():
    return gr.Slider(50, 99.9, value=99.0, step=0.1, label="Verdict threshold: percentile of "
                     "held-out normal scores", info="Above it an image is called anomalous")


def example_images(folder):
    return sorted(str(p) for p in Path(folder).glob("*.png")) if folder and Path(folder).is_dir() else []


def model_choices(zoo):
    """Dropdown entries labelled with each model's measured ROC-AUC, and the best one."""
    def auc(model):
        return model.metrics.get("roc_auc", {}).get("overall")
    choices = [(f"{name} (ROC-AUC {auc(m):.3f})" if auc(m) is not None else name, name)
               for name, m in zoo.models.items()]
    best = max(zoo.models, key=lambda name: auc(zoo.models[name]) or 0.0, default=None)
    return choices, best


def detect_tab(handlers, choices, best, examples):
    shown = handlers.zoo.models.get(best)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = gr.Dropdown(choices, value=best, label="Model",
                                info="ROC-AUC on the test set it was evaluated on (metrics.json)")
            image = drop_zone()
            threshold = threshold_slider()
            button = gr.Button("Detect", variant="primary")
            if examples:
                gr.Examples(examples, inputs=image, label="Examples: normal faces, other "
                            "faces (UTKFace), not faces (CIFAR-10)", examples_per_page=18)
        with gr.Column(scale=2):
            summary = gr.Markdown("Drop an image to see how anomalous it is.", elem_id="summary")
            with gr.Row():
                seen = gr.Image(label="Input, as the model sees it", elem_id="input-view", **VIEW)
                picture = gr.Image(label=shown.picture_label if shown else None,
                                   elem_id="reconstruction", **{**VIEW, "width": None})
            with gr.Row():
                heat = gr.Image(label=f"Heat map. {shown.heat_title}" if shown else "Heat map",
                                elem_id="heat-map", **VIEW)
                overlay = gr.Image(label="Heat map over the input", elem_id="overlay", **VIEW)
            legend = gr.Image(render.legend(shown) if shown else None, label="Heat map colours",
                              format="png", interactive=False, height=110, buttons=[])
            details = gr.JSON(label="Details", open=False)
    gr.on([button.click, image.upload], handlers.detect, [image, model, threshold],
          [seen, picture, heat, overlay, summary, details], api_name="detect")
    model.change(handlers.model_labels, model, [picture, heat, legend], api_visibility="private")


def compare_tab(handlers, examples):
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = drop_zone()
            threshold = threshold_slider()
            button = gr.Button("Compare all models", variant="primary")
            if examples:
                gr.Examples(examples, inputs=image, examples_per_page=18)
        with gr.Column(scale=2):
            table = gr.Dataframe(headers=["model", "score", "percentile", "verdict"],
                                 label="Scores (percentile: share of normal images scoring lower)",
                                 interactive=False)
            gallery = gr.Gallery(label="Per model: input, its picture, heat map, overlay",
                                 columns=4, format="png", object_fit="contain", height="auto")
    gr.on([button.click, image.upload], handlers.compare, [image, threshold], [gallery, table],
          api_name="compare")


def evaluate_tab(handlers, names):
    sample = handlers.sample_testset is not None
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            dataset = gr.Radio(["bundled sample", "upload"] if sample else ["upload"],
                               value="bundled sample" if sample else "upload", label="Test set",
                               info="The sample: 240 labelled images (120 normal faces, 60 UTKFace, "
                               "60 CIFAR-10)")
            with gr.Group(visible=not sample) as uploads:
                images = gr.File(label="Images: testingset.npy (N, 64, 64, 3) or a .zip of images",
                                 file_types=[".npy", ".zip"])
                labels = gr.File(label="Labels: .npy or .csv (0 normal, 1 anomaly)",
                                 file_types=[".npy", ".csv"])
                sources = gr.File(label="Sources (optional): .npy or .csv", file_types=[".npy", ".csv"])
            models = gr.CheckboxGroup(names, value=names, label="Models")
            button = gr.Button("Evaluate", variant="primary")
        with gr.Column(scale=2):
            table = gr.Dataframe(label="ROC-AUC", interactive=False)
            roc = gr.Plot(label="ROC curves", format="png")
            histograms = gr.Plot(label="Score histograms", format="png")
            submissions = gr.File(label="Kaggle submissions (ID,score)", file_count="multiple")
    dataset.change(lambda choice: gr.Group(visible=choice == "upload"), dataset, uploads,
                   api_visibility="private")
    button.click(handlers.evaluate, [dataset, images, labels, sources, models],
                 [table, roc, histograms, submissions], api_name="evaluate", concurrency_limit=1)


def latent_tab(handlers, names, examples):
    """Only models with a decoder have a latent space to explore."""
    gr.Markdown("Encode an image, then move its latent coordinates and watch the decoder answer. "
                "Small latents (the fully connected model's) are the easiest to read.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = gr.Dropdown(names, value=names[0] if names else None, label="Model")
            image = drop_zone()
            button = gr.Button("Encode", variant="primary")
            if examples:
                gr.Examples(examples, inputs=image, examples_per_page=18)
        with gr.Column(scale=2):
            note = gr.Markdown()
            decoded = gr.Image(label="Decoded from the sliders", **VIEW)
            state = gr.State()
            with gr.Row():
                sliders = [gr.Slider(-3, 3, value=0, step=0.01, visible=False, min_width=180)
                           for _ in range(MAX_LATENT_SLIDERS)]
    button.click(handlers.encode, [image, model], [state, decoded, note, *sliders], api_name="encode")
    gr.on([s.input for s in sliders], handlers.decode, [state, *sliders], decoded,
          api_name="decode", trigger_mode="always_last", show_progress="hidden")


def build_demo(zoo, examples_dir=None, sample_testset=None, queue_size=64):
    """The app: `examples_dir` holds example PNGs, `sample_testset` a labelled set in HW8's layout."""
    handlers = Handlers(zoo, sample_testset)
    names = list(zoo.models)
    decodable = [name for name, model in zoo.models.items() if hasattr(model, "decode")]
    examples = example_images(examples_dir)
    with gr.Blocks(title="Anomaly detection") as demo:
        gr.Markdown("# Anomaly detection\nEvery model here learned from normal images only (faces) "
                    "and gives any image an anomaly score: the higher, the less it looks like the "
                    "normal images. Beside the score, each model shows why, in its own terms: the "
                    "title of each picture says what it shows for the model on screen.")
        if zoo.errors:
            gr.Markdown("**Models that could not be loaded:**\n" + "\n".join(
                f"- `{name}`: {reason}" for name, reason in zoo.errors.items()), elem_id="load-errors")
        with gr.Tab("Detect"):
            detect_tab(handlers, *model_choices(zoo), examples)
        with gr.Tab("Compare"):
            compare_tab(handlers, examples)
        with gr.Tab("Evaluate"):
            evaluate_tab(handlers, names)
        with gr.Tab("Latent space"):
            latent_tab(handlers, decodable, examples)
    demo.queue(max_size=queue_size, default_concurrency_limit=2)  # 2 vCPUs: more at once only queues
    return demo
