"""Screenshot of the web page for the README: the real service with the bundled default model
tags a real track in headless Debian Chromium (the same helpers as
tests/app/service/test_browser.py).

    .venv/bin/python scripts/page_screenshot.py data/music/naev-data/upbeat.ogg \
        --out docs/img/web-page.png
    .venv/bin/python scripts/page_screenshot.py data/music/wesnoth-1.16-music/love_theme.ogg \
        --explain flute --top-k 6 --out docs/img/web-page-evidence.png

Needs the `chromium` and `chromium-driver` Debian packages. The track is only uploaded to the
local service; nothing but the PNG is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

from tests.app.browser import find_chromium, full_page_png, start_chromium  # noqa: E402
from tests.app.servers import ServiceProcess  # noqa: E402

SEEK = """
const done = arguments[arguments.length - 1];
const player = document.getElementById("player");
const seek = () => {
  player.addEventListener("seeked", () => requestAnimationFrame(() => done()), {once: true});
  player.currentTime = arguments[0] * player.duration;
};
if (player.readyState >= 1) seek(); else player.addEventListener("loadedmetadata", seek);
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("track", type=Path, help="an audio file to tag")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "web-page.png")
    parser.add_argument("--width", type=int, default=900, help="viewport width in CSS pixels")
    parser.add_argument("--top-k", type=int, default=12)
    parser.add_argument("--position", type=float, default=0.4, help="playhead, 0-1 of the track")
    parser.add_argument("--explain", metavar="TAG", help="also open this tag's evidence view")
    args = parser.parse_args()

    found = find_chromium()
    if found is None:
        print("needs Debian's chromium and chromium-driver", file=sys.stderr)
        return 1
    # The default checkpoint; smaller batches only shorten the warm-up.
    service = ServiceProcess({"max_batch_windows": 16})
    try:
        service.wait_ready()
        chrome = start_chromium(*found, width=args.width, height=900)
        try:
            chrome.get(service.url + "/")
            wait = WebDriverWait(chrome, 120, poll_frequency=0.1)
            wait.until(lambda c: c.find_element(By.ID, "model").text.startswith("Model "))
            # Set without input events: a changed number re-tags the last file.
            chrome.execute_script(
                "document.getElementById('top-k').value = arguments[0]", str(args.top_k)
            )
            chrome.find_element(By.ID, "file-input").send_keys(str(args.track.resolve()))
            state = "return document.getElementById('main').dataset.state"
            wait.until(lambda c: c.execute_script(state) in {"done", "error"})
            if chrome.execute_script(state) != "done":
                print(chrome.find_element(By.ID, "error").text, file=sys.stderr)
                return 1
            if args.explain:
                chrome.find_element(
                    By.CSS_SELECTOR, f'.evidence-button[data-tag="{args.explain}"]'
                ).click()
                evidence = "return document.getElementById('evidence').dataset.state"
                wait.until(lambda c: c.execute_script(evidence) in {"done", "error"})
                print(chrome.find_element(By.ID, "evidence-status").text)
            chrome.execute_async_script(SEEK, args.position)
            chrome.execute_script("document.activeElement.blur()")  # no focus ring in the shot
            args.out.parent.mkdir(parents=True, exist_ok=True)
            full_page_png(chrome, args.out)
            print(chrome.find_element(By.ID, "status").text)
        finally:
            chrome.quit()
    finally:
        service.stop()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
