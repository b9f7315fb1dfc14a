"""Take README's screenshots: the app on the shipped checkpoints, one example through Detect, and a
short training run in the Train tab on the sample faces.

Usage: python scripts/screenshot.py [FOLDER]   (default docs/; needs Debian's chromium and playwright)
"""

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main(folder):
    import app
    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    example = ROOT / "examples" / "images" / "anomaly_cifar10_2.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("input[type=file]").first.set_input_files(str(example))
        expect(page.locator("#summary")).to_contain_text("Anomaly score", timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(Path(folder) / "screenshot.png"), full_page=True)

        page.get_by_role("tab", name="Train").click()
        page.get_by_role("button", name="Use the sample faces").click()
        expect(page.locator("#train-report")).to_contain_text("images", timeout=60_000)
        page.locator("#train-button").click()
        expect(page.locator("#train-status")).to_contain_text("is ready", timeout=300_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(Path(folder) / "train.png"), full_page=True)
        browser.close()
    app.demo.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "docs"))
