"""ONNX export: one graph from uint8 images (N, S, S, 3), S = the model's image_size, to scores (N,).

Pictures are read at the model's input format first (its image_size and fit, in the metadata; HW8's
arrays are 64x64 already). The checkpoint's preprocessing (scaling, crop, resize) is inside the
graph, and its calibration (the held-out normal scores' quantiles) travels as metadata, so a
deployment needs onnxruntime and nothing of this project:
`percentile = interp(score, quantiles, linspace(0, 100, len(quantiles)))`.
"""

import copy
import json
import warnings

import numpy as np
import torch
from torch import nn

from ad.data import FITS
from ad.errors import InputError
from ad.files import atomic_path
from ad.preprocess import tensor_to_model_input

OPSET = 18


class ScoreGraph(nn.Module):
    """What `anomaly_scores` computes, from the uint8 batch on."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model.score(tensor_to_model_input(images, self.model.crop, self.model.input_size))


def export_onnx(model, path):
    """Write `path` atomically; returns the metadata stored in it."""
    try:
        import onnx
    except ImportError:
        raise InputError("exporting needs the onnx package: pip install onnx onnxruntime") from None
    model = copy.deepcopy(model).cpu().eval()  # the caller's model stays where it is
    side = model.image_size
    example = torch.zeros((2, side, side, 3), dtype=torch.uint8)
    metadata = {"architecture": model.architecture, "config": json.dumps(model.config),
                "input": f"uint8 (N, {side}, {side}, 3) RGB images: of each picture {FITS[model.fit]} to "
                         f"{side}x{side} (fit '{model.fit}')",
                "image_size": str(side), "fit": model.fit,
                "output": "anomaly scores (N,): higher is more anomalous",
                "normal_score_quantiles": json.dumps(model.normal_score_quantiles.tolist()),
                "threshold_99": repr(model.threshold(99))}
    if model.max_batch:  # a patch memory compares every neighbourhood of the batch with its memory at once
        metadata["max_batch"] = str(model.max_batch)
    graph = ScoreGraph(model)
    with warnings.catch_warnings(), atomic_path(path) as tmp:
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # sizes read as constants: the input is fixed SxS
        warnings.filterwarnings("ignore", "Exporting aten::index", UserWarning)  # geo picks its losses by index
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: see the README's ONNX note
        with torch.no_grad():
            torch.onnx.export(graph, (example,), str(tmp), input_names=["images"],
                              output_names=["scores"], dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
        written = onnx.load(str(tmp))
        for key, value in metadata.items():
            written.metadata_props.add(key=key, value=value)
        onnx.save(written, str(tmp))
    return metadata


def onnx_scores(path, images, batch_size=1024):
    """Scores from an exported graph with onnxruntime on the CPU, batch by batch (at most its max_batch)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch_size = min(batch_size, int(session.get_modelmeta().custom_metadata_map.get("max_batch", batch_size)))
    images = np.ascontiguousarray(images, dtype=np.uint8)
    return np.concatenate([session.run(None, {"images": images[i:i + batch_size]})[0]
                           for i in range(0, len(images), batch_size)]).astype(np.float64)
