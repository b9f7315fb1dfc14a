"""Take the screenshots in docs/: every tab of the app on the shipped checkpoints, on a laptop
(1400 px) and a phone (390 px), each after doing what the tab is for (an example through Detect and
Compare, the sample test set through Evaluate, an encoded face, a short training run on the sample faces).

Usage: python -m scripts.screenshot [FOLDER]   (default docs/; needs Debian's chromium and playwright)
Writes FOLDER/TAB-desktop.png and FOLDER/TAB-phone.png; README shows the desktop ones.
"""

import socket
import sys
from pathlib import Path

from scripts import ROOT

WIDTHS = {"desktop": (1400, 1000), "phone": (390, 844)}


def show_each_tab(page, folder, device, train):
    from playwright.sync_api import expect

    def shot(tab):
        for image in page.locator("img:visible").all():  # galleries load their pictures only when in view
            image.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)  # plots and images settle
        page.screenshot(path=str(Path(folder) / f"{tab}-{device}.png"), full_page=True)

    page.locator("img[src*='anomaly_cifar10_2']:visible").first.click()
    expect(page.locator("#summary")).to_contain_text("anomaly score", timeout=60_000)
    shot("detect")

    page.get_by_role("tab", name="Compare").click()
    page.locator("img[src*='anomaly_utkface_2']:visible").first.click()
    expect(page.locator("#compare-agreement")).to_contain_text("model", timeout=60_000)
    shot("compare")

    page.get_by_role("tab", name="Evaluate").click()
    page.get_by_role("button", name="Evaluate", exact=True).click()
    expect(page.locator("#confusion")).to_contain_text("called anomalous", timeout=120_000)
    shot("evaluate")

    page.get_by_role("tab", name="Latent").click()
    page.locator("img[src*='normal_celeba_1']:visible").first.click()
    expect(page.locator("#latent-decoded img")).to_be_visible(timeout=60_000)
    shot("latent")

    page.get_by_role("tab", name="Train").click()
    page.get_by_role("button", name="Use the sample faces").click()
    expect(page.locator("#train-report")).to_contain_text("images", timeout=60_000)
    if train:
        expect(page.locator("#train-epochs input")).not_to_have_value("0", timeout=60_000)  # the length's passes
        page.locator("#train-button").click()
        expect(page.locator("#train-status")).to_contain_text("is ready", timeout=300_000)
    shot("train")


def main(folder):
    import app
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.LAUNCH)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        for device, (width, height) in WIDTHS.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"http://127.0.0.1:{port}/")
            show_each_tab(page, folder, device, train=device == "desktop")  # one training run is enough
            page.close()
        browser.close()
    app.demo.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "docs"))
