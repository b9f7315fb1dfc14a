"""The app's events in one place: which component's change runs which handler, answering into which.

Every event has an api_name. The public ones (detect, compare, evaluate, encode, decode, train) are
the app's API and its MCP tools; the rest serve the page only (api_visibility="private").

An event whose handler refuses its input leaves the page as usable as before: Gradio marks every
output of a failed event with a red "Error" badge (over input components too) until that component
is updated again, so each fallible event is followed, on failure only, by a step that updates its
outputs (`recover`): emptied where the old answer would mislead, left as they are otherwise. A
control disabled for a run is enabled again on success and on failure (Gradio's `.then` does not
run after a failure).
"""

import gradio as gr

PAGE_ONLY = {"api_visibility": "private"}
QUIET = {"show_progress": "hidden", "trigger_mode": "always_last"}  # the threshold sliders: only the last move
# after a detection, the verdict and the heat map in view, the higher at the top (a phone's examples
# are below them; a laptop's verdict is below the heat map)
SHOW_VERDICT = """() => {
  const verdict = document.querySelector('#summary'), heat = document.querySelector('#heat-map');
  const seen = (e) => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; };
  if (verdict && heat && !(seen(verdict) && seen(heat)))
    window.scrollBy(0, Math.min(verdict.getBoundingClientRect().top, heat.getBoundingClientRect().top) - 8);
}"""


def emptied(components, hidden=()):
    """The answer that empties these components, and hides those."""
    return {**{c: None for c in components}, **{c: gr.update(visible=False) for c in hidden}}


def following_image(callback, components, hidden=()):
    """`callback` run whenever its image (its first input) or a setting changes: a drop zone emptied
    empties `components` (and hides `hidden`) instead."""
    def follow(image_path, *args):
        return callback(image_path, *args) if image_path else emptied(components, hidden)
    return follow


def recover(event, outputs, name, reset=None, also=None):
    """On failure: `reset()` (a dict) for some outputs, no change for the others (which clears
    their Error badges), and `also` ({component: value}: a button enabled again)."""
    outputs = list(outputs) + [c for c in (also or {}) if c not in outputs]

    def answer():
        return {**{c: gr.skip() for c in outputs}, **(reset() if reset else {}), **(also or {})}
    return event.failure(answer, None, outputs, api_name=f"{name}_failed", show_progress="hidden", **PAGE_ONLY)


def wire(handlers, page):
    """page: the components by tab (ad.ui.tabs.build_demo), the same that the handlers answer into."""
    detect_events(handlers, page)
    compare_events(handlers, page)
    evaluate_events(handlers, page)
    latent_events(handlers, page)
    train_events(handlers, page)
    page.demo.load(handlers.restore, page.browser_key, [page.session, page.detect.model, page.evaluate.models,
                                                        page.latent.model], api_name="restore", **PAGE_ONLY)


def detect_events(handlers, page):
    ui, session = page.detect, page.session
    inputs, clear = [ui.image, ui.model, ui.threshold, session], (lambda: emptied(ui.answer))
    follow = following_image(handlers.detect, ui.answer)
    # the painted image goes to the drop zone, whose change detects it
    recover(ui.painted.click(handlers.painted_image, ui.editor, ui.image, api_name="paint", **PAGE_ONLY),
            [ui.image], "paint")
    ui.from_current.click(lambda path: path, ui.image, ui.editor, api_name="start_painting", **PAGE_ONLY)
    recover(ui.button.click(handlers.detect, inputs, ui.answer, api_name="detect"), ui.answer, "detect", clear)
    shown = ui.image.change(follow, inputs, ui.answer, api_name="detect_image", **PAGE_ONLY)
    recover(shown, ui.answer, "detect_image", clear)
    shown.success(None, js=SHOW_VERDICT, api_name="show_verdict", **PAGE_ONLY)
    labels = [ui.picture, ui.heat, ui.legend, ui.about, ui.before_after]
    relabelled = ui.model.change(handlers.model_labels, [ui.model, session], labels, api_name="model_labels",
                                 **PAGE_ONLY)
    recover(relabelled, labels, "model_labels")
    recover(relabelled.success(follow, inputs, ui.answer, api_name="detect_model", **PAGE_ONLY), ui.answer,
            "detect_model", clear)
    judged = [ui.verdict, ui.details, ui.chart, ui.overlay]  # the defect region moves with the threshold
    recover(ui.threshold.change(handlers.rejudge, [ui.details, ui.threshold, session], judged, api_name="rejudge",
                                **PAGE_ONLY, **QUIET), judged, "rejudge")


def compare_events(handlers, page):
    ui, session = page.compare, page.session
    inputs, clear = [ui.image, ui.threshold, session], (lambda: emptied(ui.answer))
    recover(ui.button.click(handlers.compare, inputs, ui.answer, api_name="compare"), ui.answer, "compare", clear)
    recover(ui.image.change(following_image(handlers.compare, ui.answer), inputs, ui.answer,
                            api_name="compare_image", **PAGE_ONLY), ui.answer, "compare_image", clear)
    ui.threshold.change(handlers.rejudge_all, [ui.seen, ui.threshold], [ui.table, ui.agreement],
                        api_name="rejudge_all", **PAGE_ONLY, **QUIET)


def evaluate_events(handlers, page):
    ui, session = page.evaluate, page.session
    ui.dataset.change(lambda choice: gr.Group(visible=choice == "upload"), ui.dataset, ui.uploads,
                      api_name="choose_test_set", **PAGE_ONLY)
    scored = ui.button.click(lambda: gr.Button(interactive=False), None, ui.button, api_name="evaluate_started",
                             **PAGE_ONLY).then(
        handlers.evaluate, [ui.dataset, ui.images, ui.labels, ui.sources, ui.models, ui.mode, ui.percentile, session],
        ui.answer, api_name="evaluate", concurrency_limit=1)
    enabled = {ui.button: gr.update(interactive=True)}  # an update: gr.Button() here would add a button
    scored.success(lambda: enabled, None, ui.button, api_name="evaluate_ended", **PAGE_ONLY)
    recover(scored, ui.answer, "evaluate", also=enabled)
    moved = gr.on([ui.mode.change, ui.percentile.change, ui.inspected.input], handlers.at_threshold,
                  [ui.run, ui.mode, ui.percentile, ui.inspected], ui.moving, api_name="at_threshold", **PAGE_ONLY,
                  **QUIET)
    recover(moved, ui.moving, "at_threshold")
    recover(ui.inspected.input(handlers.defect_gallery, [ui.run, ui.inspected], ui.defects, api_name="defect_gallery",
                               **PAGE_ONLY), [ui.defects], "defect_gallery")
    recover(gr.on([ui.mode.change, ui.percentile.release], handlers.downloads, [ui.run, ui.mode, ui.percentile],
                  ui.files, api_name="downloads", trigger_mode="always_last", **PAGE_ONLY), [ui.files], "downloads")
    detect = page.detect
    opened_into = [detect.image, detect.model, detect.threshold, detect.details, page.tabs]
    for gallery, key in ((ui.flagged, "flagged"), (ui.false_positives, "false_positives"),
                         (ui.false_negatives, "false_negatives")):
        opened = gallery.select(handlers.open_in_detect, [ui.run, ui.shown, gr.State(key), ui.mode, ui.percentile],
                                opened_into, api_name=f"open_{key}", **PAGE_ONLY)
        recover(opened, opened_into, f"open_{key}")


def latent_events(handlers, page):
    ui, session = page.latent, page.session
    recover(ui.button.click(handlers.encode, [ui.image, ui.model, session], ui.answer, api_name="encode"),
            ui.answer, "encode")
    follow = following_image(handlers.encode, [ui.state, ui.decoded, ui.note], hidden=ui.sliders)
    recover(gr.on([ui.image.change, ui.model.change], follow, [ui.image, ui.model, session], ui.answer,
                  api_name="encode_image", **PAGE_ONLY), ui.answer, "encode_image")
    recover(gr.on([s.input for s in ui.sliders], handlers.decode, [session, ui.state, *ui.sliders], ui.decoded,
                  api_name="decode", **QUIET), [ui.decoded], "decode")


def train_events(handlers, page):
    ui, session = page.train, page.session
    inspected = [ui.report, ui.shown, ui.epochs]
    # a refused upload leaves the drop zone: the next upload replaces it instead of joining it
    recover(gr.on([ui.files.change, ui.architecture.change, ui.length.change], handlers.inspect_training_set,
                  [ui.files, ui.architecture, ui.length], inspected, api_name="inspect_training_set", **PAGE_ONLY),
            inspected, "inspect_training_set", also={ui.files: None})
    ui.use_sample.click(handlers.sample_faces, None, ui.files, api_name="sample_faces", **PAGE_ONLY)
    trained_into = [ui.trained_name, ui.status, ui.loss, ui.card, ui.download, session, page.detect.model,
                    page.evaluate.models, page.latent.model]
    trained = ui.button.click(handlers.train, [ui.files, ui.architecture, ui.epochs, ui.crop, ui.name, session],
                              trained_into, api_name="train", concurrency_limit=1, concurrency_id="train")
    recover(trained, trained_into, "train")
    # the session's key into the visitor's browser: a reload finds their models again
    trained.success(lambda key: key, session, page.browser_key, api_name="remember_session", **PAGE_ONLY)
    ui.stop.click(handlers.stop_training, None, ui.status, api_name="stop_training", **PAGE_ONLY)
    recover(ui.push.click(handlers.push, [ui.trained_name, ui.repo, ui.token, session], ui.pushed, api_name="push",
                          **PAGE_ONLY), [ui.pushed], "push")
