"""The Gradio app (a Hugging Face Space): detect, compare, evaluate and explore anomalies."""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from ad.ui.tabs import CSS, build_demo  # noqa: E402
from ad.ui.zoo import load_zoo, model_sources  # noqa: E402

HERE = Path(__file__).resolve().parent
MAX_UPLOAD_MB = 300  # a full HW8 test set (19,636 images) is 241 MB: Evaluate takes it
MAX_UPLOAD = f"{MAX_UPLOAD_MB}mb"
# how the app is served, tests included; mcp_server: agents call Detect and Compare as MCP tools
LAUNCH = {"max_file_size": MAX_UPLOAD, "css": CSS, "mcp_server": True}

demo = build_demo(load_zoo(model_sources(HERE / "checkpoints")), examples_dir=HERE / "examples" / "images",
                  sample_testset=HERE / "examples" / "sample_testset", upload_limit=f"{MAX_UPLOAD_MB} MB")

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), **LAUNCH)
