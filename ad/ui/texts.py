"""What the page says about models and their verdicts: menus, descriptions, notes and the Compare table."""

import json
from pathlib import Path

import pandas as pd

from ad.scoring import verdict
from ad.ui.render import VERDICT_COLOURS
from ad.ui.sessions import SESSION_SECONDS

SMALL_IMAGE = 32  # px: an upload smaller than this on its short side is mostly made up by the upscaling
ENSEMBLE = "ensemble (mean percentile)"  # Compare's last row: the mean of the models' percentiles


def plural(count, word, words=None):
    """1 image, 2 images, 1,000 images."""
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def calibration_images(model):
    """How many held-out normal images placed the model's percentiles (None: not recorded)."""
    return model.training_record.get("calibration_images")


def roc_auc(model):
    return model.metrics.get("roc_auc", {}).get("overall")


def choice_labels(models):
    """(label, name) dropdown entries: each model in a few words, with its measured ROC-AUC."""
    def label(name, model):
        auc, check = roc_auc(model), model.training_record.get("synthetic_defects_roc_auc")
        if auc is not None:
            return f"{name}: {model.tagline} (ROC-AUC {auc:.3f})"
        return f"{name}: {model.tagline}" + (f" (self-check {check:.2f} on synthetic defects)" if check else "")
    return [(label(name, m), name) for name, m in models.items()]


def best_model(models):
    """The name of the model with the highest measured ROC-AUC (the one a page opens with)."""
    return max(models, key=lambda name: roc_auc(models[name]) or 0.0, default=None)


def about(model):
    return (f"{model.summary}  \n**Score**: {model.score_description}; higher is more anomalous, and the "
            f"percentile says how it ranks among held-out normal images.  \n**Heat map**: "
            f"{model.heat_title.lower()}, in {model.heat_unit}; full colour at {model.heat_full_scale:.3g}.")


def before_after_label(model):
    """The before/after slider shows the input beside the reconstruction, or beside the overlay."""
    after = "its reconstruction" if model.reconstructs else "the heat map over it"
    return f"Before and after: drag to compare the input with {after}"


def what_it_sees(model, size):
    note = f"The model reads {model.sees()}."
    width, height = size
    if min(width, height) < SMALL_IMAGE:
        note += (f"  \n**This image is {width}x{height} px**, much smaller than the 64x64 the models "
                 "read: it was blown up, so its fine detail is made up by the upscaling.")
    return note


def latent_note(name, dimensions, shown):
    return (f"{name}: {plural(dimensions, 'latent dimension')}"
            + (f"; the first {shown} are sliders, the rest stay as encoded" if shown < dimensions else ""))


def no_latent(name, names):
    return (f"{name} has no latent code to explore; choose one of {', '.join(names)}" if names
            else f"{name} has no latent code to explore, and no model here has one")


def defects_label(name):
    """What the gallery of heat maps against the true defects shows, and in what order."""
    return (f"Heat maps against the true defect (outlined in cyan), by {name}: the anomalous images whose defect "
            "it found least first, by each image's pixel ROC-AUC (the chance that a defect pixel scores above a "
            "normal pixel of the same image: 1 = the heat lies on the defect alone, 0.5 = anywhere)")


def training_report(count, skipped, length, epochs, steps, seconds):
    report = f"**{plural(count, 'image')}** read"
    if skipped:
        report += (f", **{len(skipped):,} skipped**: " + "; ".join(reason for _, reason in skipped[:3])
                   + ("; ..." if len(skipped) > 3 else ""))
    return report + (f".  \n{length.capitalize()} training: {plural(epochs, 'pass', 'passes')} "
                     f"({plural(epochs * steps, 'step')}), about "
                     f"{max(5, round(seconds, -1)):.0f} s on this machine.")


def ready(name, epochs_done, epochs):
    stopped = f" (stopped after epoch {epochs_done})" if epochs_done < epochs else ""
    return (f"**{name}** is ready{stopped}: pick it in Detect, Compare and Evaluate. It stays for "
            f"{SESSION_SECONDS // 3600} hours in this browser, reloads included; download it to keep it.")


def card(model, folder, image_count):
    record = model.training_record
    held = calibration_images(model)
    return (f"**{Path(folder).name}**: `{model.architecture}`, {model.parameter_count():,} parameters, "
            f"trained on {plural(image_count - (held or 0), 'image')} ({held or 0:,} more held out "
            f"to calibrate it) for {plural(len(record.get('history', [])), 'epoch')} in "
            f"{record.get('history', [{}])[-1].get('seconds', 0):.0f} s. Options: "
            f"`{json.dumps(model.options)}`  \n"
            f"{model.summary}")


def compare_table(seen, threshold_percentile):
    """Rows by model: ROC-AUC, percentile (comparable across models), verdict, score; the ensemble
    last, whose figure is the mean percentile (it has no score of its own) and which gives no verdict:
    nothing measured that the mean beats the best model (Evaluate measures it on a labelled test set);
    the most reliable model starred; and a sentence on who disagrees."""
    trusted = max(seen, key=lambda r: r["roc_auc"] or 0.0)["model"] if any(r["roc_auc"] for r in seen) else None
    rows = [[("★ " if r["model"] == trusted else "") + r["model"], r["roc_auc"], round(r["percentile"], 2),
             verdict(r["percentile"], threshold_percentile), float(f"{r['score']:.4g}")] for r in seen]
    mean = sum(r["percentile"] for r in seen) / len(seen)
    rows.append([ENSEMBLE, None, round(mean, 2), NO_VERDICT, None])
    table = pd.DataFrame(rows, columns=["model", "ROC-AUC", "percentile", "verdict", "score"])

    def blank_or(form):  # the ensemble has no ROC-AUC and no score: an empty cell
        return lambda v: "" if pd.isna(v) else form.format(v)
    styled = table.style.map(lambda v: f"color: {VERDICT_COLOURS.get(v, 'inherit')}; font-weight: bold",
                             subset=["verdict"]).format(
        {"ROC-AUC": blank_or("{:.3f}"), "percentile": "{:.2f}", "score": blank_or("{:.4g}")})
    return styled, disagreement(rows[:-1], trusted) + ENSEMBLE_NOTE


NO_VERDICT = "none (not measured)"
ENSEMBLE_NOTE = ("  \nThe ensemble's mean percentile gives no verdict: averaging has not been measured to beat "
                 "the best single model here (Evaluate measures it on a labelled test set).")


def disagreement(rows, trusted):
    by_verdict = {}
    for row in rows:
        by_verdict.setdefault(row[3], []).append(row[0].removeprefix("★ "))
    trust = f" The most reliable here is **{trusted}** (highest ROC-AUC): trust its verdict." if trusted else ""
    if len(by_verdict) == 1:
        agree = "The one model says" if len(rows) == 1 else f"All {len(rows)} models agree"
        return f"{agree}: **{next(iter(by_verdict))}**.{trust}"
    return ("The models **disagree**: " + "; ".join(f"{', '.join(names)} call{'s' * (len(names) == 1)} it {word}"
                                                  for word, names in sorted(by_verdict.items())) + "." + trust)
