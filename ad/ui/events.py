"""The app's events in one place: which component's change runs which handler, answering into which.

Every event has an api_name. The public ones (detect, compare, evaluate, encode, decode, train) are
the app's API and its MCP tools; the rest serve the page only (api_visibility="private").
"""

import gradio as gr

from ad.ui.handlers import emptied, following_image

PAGE_ONLY = {"api_visibility": "private"}
QUIET = {"show_progress": "hidden", "trigger_mode": "always_last"}  # the threshold sliders: only the last move


def wire(handlers, page):
    """page: the components by tab (ad.ui.tabs.build_demo), the same that the handlers answer into."""
    detect_events(handlers, page)
    compare_events(handlers, page)
    evaluate_events(handlers, page)
    latent_events(handlers, page)
    train_events(handlers, page)


def detect_events(handlers, page):
    ui, session = page.detect, page.session
    inputs, clear = [ui.image, ui.model, ui.threshold, session], (lambda: emptied(ui.answer))
    follow = following_image(handlers.detect, ui.answer)
    # the painted image goes to the drop zone, whose change detects it
    ui.painted.click(handlers.painted_image, ui.editor, ui.image, api_name="paint", **PAGE_ONLY)
    ui.from_current.click(lambda path: path, ui.image, ui.editor, api_name="start_painting", **PAGE_ONLY)
    ui.button.click(handlers.detect, inputs, ui.answer, api_name="detect").failure(
        clear, None, ui.answer, api_name="detect_failed", **PAGE_ONLY)
    ui.image.change(follow, inputs, ui.answer, api_name="detect_image", **PAGE_ONLY).failure(
        clear, None, ui.answer, api_name="detect_image_failed", **PAGE_ONLY)
    ui.model.change(handlers.model_labels, [ui.model, session], [ui.picture, ui.heat, ui.legend, ui.about,
                                                                 ui.before_after],
                    api_name="model_labels", **PAGE_ONLY).then(
        follow, inputs, ui.answer, api_name="detect_model", **PAGE_ONLY).failure(
        clear, None, ui.answer, api_name="detect_model_failed", **PAGE_ONLY)
    ui.threshold.change(handlers.rejudge, [ui.details, ui.threshold, session], [ui.verdict, ui.details, ui.chart],
                        api_name="rejudge", **PAGE_ONLY, **QUIET)


def compare_events(handlers, page):
    ui, session = page.compare, page.session
    inputs, clear = [ui.image, ui.threshold, session], (lambda: emptied(ui.answer))
    ui.button.click(handlers.compare, inputs, ui.answer, api_name="compare").failure(
        clear, None, ui.answer, api_name="compare_failed", **PAGE_ONLY)
    ui.image.change(following_image(handlers.compare, ui.answer), inputs, ui.answer,
                    api_name="compare_image", **PAGE_ONLY).failure(
        clear, None, ui.answer, api_name="compare_image_failed", **PAGE_ONLY)
    ui.threshold.change(handlers.rejudge_all, [ui.seen, ui.threshold], [ui.table, ui.agreement],
                        api_name="rejudge_all", **PAGE_ONLY, **QUIET)


def evaluate_events(handlers, page):
    ui, session = page.evaluate, page.session
    ui.dataset.change(lambda choice: gr.Group(visible=choice == "upload"), ui.dataset, ui.uploads,
                      api_name="choose_test_set", **PAGE_ONLY)
    ui.button.click(lambda: gr.Button(interactive=False), None, ui.button, api_name="evaluate_started",
                    **PAGE_ONLY).then(
        handlers.evaluate, [ui.dataset, ui.images, ui.labels, ui.sources, ui.models, ui.mode, ui.percentile, session],
        ui.answer, api_name="evaluate", concurrency_limit=1).then(  # .then: the button returns after an error too
        lambda: gr.Button(interactive=True), None, ui.button, api_name="evaluate_ended", **PAGE_ONLY)
    gr.on([ui.mode.change, ui.percentile.change, ui.inspected.input], handlers.at_threshold,
          [ui.run, ui.mode, ui.percentile, ui.inspected], ui.moving, api_name="at_threshold", **PAGE_ONLY, **QUIET)
    gr.on([ui.mode.change, ui.percentile.release], handlers.downloads, [ui.run, ui.mode, ui.percentile], ui.files,
          api_name="downloads", trigger_mode="always_last", **PAGE_ONLY)
    for gallery, key in ((ui.flagged, "flagged"), (ui.false_positives, "false_positives"),
                         (ui.false_negatives, "false_negatives")):
        gallery.select(handlers.open_in_detect, [ui.run, ui.shown, gr.State(key)],
                       [page.detect.image, page.detect.model, page.tabs], api_name=f"open_{key}", **PAGE_ONLY)


def latent_events(handlers, page):
    ui, session = page.latent, page.session
    ui.button.click(handlers.encode, [ui.image, ui.model, session], ui.answer, api_name="encode")
    follow = following_image(handlers.encode, [ui.state, ui.decoded, ui.note], hidden=ui.sliders)
    gr.on([ui.image.change, ui.model.change], follow, [ui.image, ui.model, session], ui.answer,
          api_name="encode_image", **PAGE_ONLY)
    gr.on([s.input for s in ui.sliders], handlers.decode, [session, ui.state, *ui.sliders], ui.decoded,
          api_name="decode", **QUIET)


def train_events(handlers, page):
    ui, session = page.train, page.session
    gr.on([ui.files.change, ui.architecture.change, ui.length.change], handlers.inspect_training_set,
          [ui.files, ui.architecture, ui.length], [ui.report, ui.shown, ui.epochs], api_name="inspect_training_set",
          **PAGE_ONLY)
    ui.use_sample.click(handlers.sample_faces, None, ui.files, api_name="sample_faces", **PAGE_ONLY)
    ui.button.click(handlers.train, [ui.files, ui.architecture, ui.epochs, ui.crop, ui.name, session],
                    [ui.trained_name, ui.status, ui.loss, ui.card, ui.download, session, page.detect.model,
                     page.evaluate.models, page.latent.model], api_name="train", concurrency_limit=1,
                    concurrency_id="train")
    ui.stop.click(handlers.stop_training, None, ui.status, api_name="stop_training", **PAGE_ONLY)
    ui.push.click(handlers.push, [ui.trained_name, ui.repo, ui.token, session], ui.pushed, api_name="push",
                  **PAGE_ONLY)
