"""The web page in a real browser: headless Debian Chromium, driven by Selenium, against the real
service (uvicorn in a subprocess).

Needs the `chromium` and `chromium-driver` Debian packages; without them the tests skip with a
message, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from tests.app.audio import encode
from tests.app.browser import find_chromium, full_page_png, start_chromium
from tests.app.catalog.music import build_catalog, make_excerpts
from tests.app.conftest import MAIN_SERVER_SETTINGS
from tests.app.servers import FileServer, Route, ServiceProcess

pytestmark = pytest.mark.slow

TOP_K = 12  # the page's default

# Colour statistics of the heat map's plot area (right of the tag labels, above the time axis).
HEATMAP_PIXELS = """
const canvas = document.getElementById("heatmap");
const d = canvas.dataset;
const x0 = Math.round(Number(d.plotX)), w = Math.floor(Number(d.plotWidth));
const h = Math.floor(Number(d.plotHeight));
const data = canvas.getContext("2d").getImageData(x0, 0, w, h).data;
const colours = new Set();
let painted = 0;
for (let i = 0; i < data.length; i += 4) {
  colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  if (data[i] + data[i + 1] + data[i + 2] < 3 * 250) painted += 1;
}
// Columns white from top to bottom: only the playhead line draws those.
const white = [];
for (let x = 0; x < w; x += 1) {
  let all = true;
  for (let y = 0; y < h && all; y += 1) {
    const i = 4 * (y * w + x);
    all = data[i] === 255 && data[i + 1] === 255 && data[i + 2] === 255;
  }
  if (all) white.push(x);
}
return {colours: colours.size, painted: painted / (w * h), white, plotWidth: w,
        rows: Number(d.rows), duration: Number(d.duration)};
"""


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    found = find_chromium()
    if found is None:
        message = (
            "Chromium or its driver is missing (Debian packages chromium and chromium-driver): "
            "cannot test the web page in a real browser"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def browser(chromium: tuple[str, str]) -> Iterator[webdriver.Chrome]:
    chrome = start_chromium(*chromium, width=1000, height=900)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def phone(chromium: tuple[str, str]) -> Iterator[webdriver.Chrome]:
    chrome = start_chromium(*chromium, width=360, height=740)
    try:
        yield chrome
    finally:
        chrome.quit()


def wait_for(chrome: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any]) -> Any:
    return WebDriverWait(chrome, 60, poll_frequency=0.1).until(condition)


def open_page(chrome: webdriver.Chrome, server: ServiceProcess) -> None:
    chrome.get(server.url + "/")
    wait_for(chrome, lambda c: c.find_element(By.ID, "model").text.startswith("Model "))


def state(chrome: webdriver.Chrome) -> str:
    return str(chrome.find_element(By.ID, "main").get_attribute("data-state"))


def wait_finished(chrome: webdriver.Chrome) -> str:
    return str(wait_for(chrome, lambda c: state(c) if state(c) in {"done", "error"} else None))


def upload(chrome: webdriver.Chrome, path: Path) -> None:
    # The picker's input behind the drop zone button; Selenium sets its file directly.
    chrome.find_element(By.ID, "file-input").send_keys(str(path))


def bar_tags(chrome: webdriver.Chrome) -> list[str]:
    return [
        str(bar.get_attribute("data-tag"))
        for bar in chrome.find_elements(By.CSS_SELECTOR, "#bars .bar")
    ]


def error_text(chrome: webdriver.Chrome) -> str:
    wait_for(chrome, lambda c: c.find_element(By.ID, "error").is_displayed())
    return str(chrome.find_element(By.ID, "error").text)


def no_horizontal_scroll(chrome: webdriver.Chrome) -> bool:
    return bool(
        chrome.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    )


def test_upload_draws_bars_and_heat_map(
    browser: webdriver.Chrome, server: ServiceProcess, tmp_path: Path
) -> None:
    track = tmp_path / "generated music.mp3"
    track.write_bytes(encode("mp3", 12.0))
    not_found_before = server.metric(
        "tagger_requests_total", 'endpoint="unmatched",outcome="not_found"'
    )

    open_page(browser, server)
    upload(browser, track)
    assert wait_finished(browser) == "done", browser.find_element(By.ID, "error").text

    assert "Tagged generated music.mp3" in browser.find_element(By.ID, "status").text
    # One vocabulary: no vocabulary to choose, tags named as always.
    assert not browser.find_element(By.ID, "taxonomy-field").is_displayed()
    assert browser.find_element(By.ID, "results").is_displayed()
    assert not browser.find_element(By.ID, "similar").is_displayed()  # no catalogue here
    tags = bar_tags(browser)
    assert len(tags) == TOP_K
    groups = browser.find_elements(By.CSS_SELECTOR, "#bars .bar-group h4")
    assert groups
    # A group per category, each heading once, in the page's category order.
    names = [group.text for group in groups]
    assert len(names) == len(set(names))
    order = ["Genre", "Mood", "Instrument", "Vocals", "Tempo and dynamics", "Other"]
    assert names == sorted(names, key=order.index)
    fills = browser.execute_script(
        "return [...document.querySelectorAll('#bars .bar-fill')]"
        ".map((el) => el.getBoundingClientRect().width)"
    )
    assert all(width > 0 for width in fills)

    pixels = browser.execute_script(HEATMAP_PIXELS)
    assert pixels["rows"] == TOP_K
    assert pixels["duration"] == pytest.approx(12.0, abs=0.1)
    assert pixels["painted"] > 0.8, pixels  # cells cover the plot but for the row gaps
    assert pixels["colours"] >= 3, pixels
    assert min(pixels["white"]) <= 2  # the playhead at 0:00

    # The picked file plays from an object URL; seeking moves the line on the map.
    assert str(browser.find_element(By.ID, "player").get_attribute("src")).startswith("blob:")
    wait_for(
        browser,
        lambda c: c.execute_script("return document.getElementById('player').readyState >= 1"),
    )
    browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const player = document.getElementById("player");
        player.addEventListener("seeked", () => requestAnimationFrame(() => done()), {once: true});
        player.currentTime = 6.0;
        """
    )
    moved = browser.execute_script(HEATMAP_PIXELS)
    middle = moved["plotWidth"] * 6.0 / moved["duration"]
    assert moved["white"], "no playhead line after seeking"
    assert all(abs(x - middle) <= 2 for x in moved["white"]), (moved["white"], middle)

    full_page_png(browser, tmp_path / "page.png")
    assert (tmp_path / "page.png").stat().st_size > 10_000

    # Another number of tags tags the same file again.
    top_k = browser.find_element(By.ID, "top-k")
    top_k.send_keys(Keys.CONTROL + "a" + Keys.NULL + "5" + Keys.TAB)  # select all, type 5
    wait_for(browser, lambda c: state(c) == "done" and len(bar_tags(c)) == 5)
    assert browser.execute_script(HEATMAP_PIXELS)["rows"] == 5
    # The page and its assets load without a single unmatched request (favicon and the like).
    not_found_after = server.metric(
        "tagger_requests_total", 'endpoint="unmatched",outcome="not_found"'
    )
    assert not_found_after == not_found_before


def test_non_audio_upload_shows_the_problem_in_plain_words(
    browser: webdriver.Chrome, server: ServiceProcess, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.mp3"  # the name says mp3; the content decides
    notes.write_text("These are my notes, not a song.\n" * 40)
    open_page(browser, server)
    upload(browser, notes)
    assert wait_finished(browser) == "error"
    text = error_text(browser)
    assert "This file is not audio that the tagger can read." in text
    assert "Details: " in text  # the service's own `detail`
    assert not browser.find_element(By.ID, "results").is_displayed()
    assert "Could not tag notes.mp3" in browser.find_element(By.ID, "status").text
    browser.save_screenshot(str(tmp_path / "error.png"))

    # A good file after a bad one clears the error.
    track = tmp_path / "track.wav"
    track.write_bytes(encode("wav", 4.0))
    upload(browser, track)
    assert wait_finished(browser) == "done"
    assert not browser.find_element(By.ID, "error").is_displayed()

    # Dropped on the drop zone (a synthetic drop: WebDriver cannot drag files from the desktop).
    browser.execute_script(
        """
        const data = new DataTransfer();
        data.items.add(new File(["just text"], "dropped.ogg", {type: "audio/ogg"}));
        const zone = document.getElementById("dropzone");
        zone.dispatchEvent(new DragEvent("dragenter", {dataTransfer: data, bubbles: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        """
    )
    wait_for(browser, lambda c: "dropped.ogg" in c.find_element(By.ID, "status").text)
    assert wait_finished(browser) == "error"
    assert "not audio" in error_text(browser)
    assert "dragging" not in str(browser.find_element(By.ID, "dropzone").get_attribute("class"))


def test_pasted_url_with_keyboard_only(
    browser: webdriver.Chrome, server: ServiceProcess, file_server: FileServer
) -> None:
    file_server.routes["/music/song.ogg"] = Route(encode("ogg", 8.0))
    open_page(browser, server)

    # Tab order: skip link, then the drop zone (a real button with a name and a focus ring).
    focused: list[str] = []
    for _ in range(3):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused.append(str(browser.switch_to.active_element.get_attribute("id")))
    assert focused[1:] == ["dropzone", "url-input"], focused
    dropzone = browser.find_element(By.ID, "dropzone")
    assert dropzone.aria_role == "button"
    assert "Choose an audio file" in dropzone.accessible_name
    url_input = browser.find_element(By.ID, "url-input")
    assert url_input.accessible_name == "Or paste the URL of an audio file"
    assert url_input.value_of_css_property("outline-style") != "none"
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("aria-live") == "polite"

    # Enter without a URL: told what to type, focus stays in the field.
    url_input.send_keys(Keys.ENTER)
    assert "starting with http:// or https://" in error_text(browser)
    assert browser.switch_to.active_element.get_attribute("id") == "url-input"

    url = f"{file_server.base}/music/song.ogg"
    browser.switch_to.active_element.send_keys(url + Keys.ENTER)
    assert wait_finished(browser) == "done", browser.find_element(By.ID, "error").text
    assert len(bar_tags(browser)) == TOP_K
    assert browser.find_element(By.ID, "player").get_attribute("src") == url
    assert browser.find_element(By.ID, "track-name").text == "song.ogg"

    # A URL the service cannot download: 502, said plainly.
    url_input.clear()
    url_input.send_keys(f"{file_server.base}/missing.ogg" + Keys.ENTER)
    assert wait_finished(browser) == "error"
    assert "could not download the audio from this URL" in error_text(browser)


def test_phone_width(phone: webdriver.Chrome, server: ServiceProcess, tmp_path: Path) -> None:
    open_page(phone, server)
    assert phone.execute_script("return window.innerWidth") == 360
    assert no_horizontal_scroll(phone)
    dropzone = phone.find_element(By.ID, "dropzone")
    assert dropzone.rect["width"] >= 0.8 * 360  # the drop zone spans the narrow screen
    track = tmp_path / "track.m4a"
    track.write_bytes(encode("m4a", 10.0))
    upload(phone, track)
    assert wait_finished(phone) == "done"
    assert len(bar_tags(phone)) == TOP_K
    assert no_horizontal_scroll(phone)
    pixels = phone.execute_script(HEATMAP_PIXELS)
    assert pixels["painted"] > 0.8
    canvas = phone.find_element(By.ID, "heatmap")
    assert canvas.rect["width"] <= phone.execute_script("return window.innerWidth")
    full_page_png(phone, tmp_path / "phone.png")


@pytest.fixture(scope="module")
def catalog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The service with a catalogue of six excerpts of real music (two per track)."""
    folder = tmp_path_factory.mktemp("music")
    make_excerpts(folder)
    database = build_catalog(folder, tmp_path_factory.mktemp("catalog") / "catalog.db")
    process = ServiceProcess(
        {"catalog": str(database), "torch_threads": 1, "max_batch_windows": 8, "max_wait_ms": 5}
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_similar_tracks_in_the_catalogue_are_listed_and_playable(
    browser: webdriver.Chrome, catalog_server: ServiceProcess, tmp_path: Path
) -> None:
    query = tmp_path / "techno excerpt.flac"
    excerpts = make_excerpts(tmp_path)
    query.write_bytes(excerpts["techno-b"].read_bytes())
    open_page(browser, catalog_server)
    upload(browser, query)
    assert wait_finished(browser) == "done", browser.find_element(By.ID, "error").text
    wait_for(browser, lambda c: c.find_elements(By.CSS_SELECTOR, "#similar-list li"))
    section = browser.find_element(By.ID, "similar")
    assert section.is_displayed()
    assert "Similar tracks in the catalogue" in section.text
    items = browser.find_elements(By.CSS_SELECTOR, "#similar-list li")
    assert len(items) == 6
    names = [i.find_element(By.CLASS_NAME, "similar-name").text for i in items]
    # Its own catalogued copy first, then the other excerpt of the same track.
    assert names[:2] == ["techno-b.flac", "techno-a.flac"]
    assert items[0].find_element(By.CLASS_NAME, "similar-score").text == "1.000"
    # Every result plays from the service.
    played = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const audio = document.querySelector("#similar-list li:nth-child(2) audio");
        audio.preload = "metadata";
        audio.addEventListener("loadedmetadata", () => done(audio.duration), {once: true});
        audio.addEventListener("error", () => done(-1), {once: true});
        audio.load();
        """
    )
    assert played == pytest.approx(8.0, abs=0.1)
    assert no_horizontal_scroll(browser)


# Pixels of the evidence map's plot area: distinct colours and orange (evidence) ones.
EVIDENCE_PIXELS = """
const canvas = document.getElementById("evidence-map");
const d = canvas.dataset, ratio = window.devicePixelRatio || 1;
const data = canvas.getContext("2d").getImageData(
  Math.round(Number(d.plotX) * ratio), 0,
  Math.floor(Number(d.plotWidth) * ratio), Math.floor(Number(d.plotHeight) * ratio)).data;
const colours = new Set();
let orange = 0;
for (let i = 0; i < data.length; i += 4) {
  colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  if (data[i] > data[i + 2] + 60) orange += 1;
}
return {colours: colours.size, orange: orange / (data.length / 4)};
"""


def test_a_tag_chosen_with_the_keyboard_shows_its_evidence(
    browser: webdriver.Chrome, server: ServiceProcess, tmp_path: Path
) -> None:
    track = tmp_path / "evidence.mp3"
    track.write_bytes(encode("mp3", 8.0))
    open_page(browser, server)
    upload(browser, track)
    assert wait_finished(browser) == "done", browser.find_element(By.ID, "error").text
    assert not browser.find_element(By.ID, "evidence").is_displayed()

    buttons = browser.find_elements(By.CSS_SELECTOR, "#bars .bar .evidence-button")
    assert [b.get_attribute("data-tag") for b in buttons] == bar_tags(browser)
    # Tab from the tag before it onto the second tag's button, then Enter.
    browser.execute_script("arguments[0].focus()", buttons[0])
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element == buttons[1]
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    box = browser.find_element(By.ID, "evidence")
    wait_for(browser, lambda c: box.get_attribute("data-state") in {"done", "error"})
    status = browser.find_element(By.ID, "evidence-status").text
    assert box.get_attribute("data-state") == "done", status
    tag = buttons[1].get_attribute("data-tag")
    assert buttons[1].get_attribute("aria-pressed") == "true"
    assert buttons[0].get_attribute("aria-pressed") == "false"
    assert browser.find_element(By.ID, "evidence-tag").text == tag

    evidence = browser.find_element(By.ID, "evidence-map")
    heatmap = browser.find_element(By.ID, "heatmap")
    assert evidence.get_attribute("data-tag") == tag
    assert evidence.get_attribute("data-method") == "gradient"
    assert evidence.get_attribute("data-bands") == "16"
    assert evidence.get_attribute("data-columns") == "18"  # 8 s in steps of 0.46 s
    # One time axis with the tags-over-time map above it.
    for name in ("data-plot-x", "data-plot-width"):
        assert evidence.get_attribute(name) is not None
        assert evidence.get_attribute(name) == heatmap.get_attribute(name)
    pixels = browser.execute_script(EVIDENCE_PIXELS)
    assert pixels["colours"] > 50  # a spectrogram, not a flat fill
    assert pixels["orange"] > 0.01
    description = browser.find_element(By.ID, "evidence-description").get_attribute("textContent")
    assert f"Evidence for {tag} over 0:08" in str(description)
    assert "Hz" in str(description)

    # Space on another tag switches the view to it.
    browser.execute_script("arguments[0].focus()", buttons[0])
    ActionChains(browser).send_keys(Keys.SPACE).perform()
    first = buttons[0].get_attribute("data-tag")
    wait_for(browser, lambda c: evidence.get_attribute("data-tag") == first)
    assert box.get_attribute("data-state") == "done"


@pytest.fixture(scope="module")
def two_server(two_vocabulary_checkpoint: Path) -> Iterator[ServiceProcess]:
    """The service with a 100-tag model of two vocabularies (mtt, msd; random weights)."""
    process = ServiceProcess({"checkpoint": str(two_vocabulary_checkpoint), **MAIN_SERVER_SETTINGS})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_two_vocabularies_by_category_with_a_taxonomy_selector(
    browser: webdriver.Chrome, two_server: ServiceProcess, tmp_path: Path
) -> None:
    open_page(browser, two_server)
    model = browser.find_element(By.ID, "model").text
    assert model.endswith("· 100 tags in 2 vocabularies (mtt, msd)"), model
    field = browser.find_element(By.ID, "taxonomy-field")
    assert field.is_displayed()
    select = browser.find_element(By.ID, "taxonomy")
    assert select.accessible_name == "Vocabulary"
    options = [o.get_attribute("value") for o in select.find_elements(By.TAG_NAME, "option")]
    assert options == ["", "mtt", "msd"]

    # The vocabulary, by taxonomy and category.
    browser.find_element(By.ID, "vocabulary-summary").click()
    summary = browser.find_element(By.ID, "vocabulary-summary").text
    assert summary == "The model's tags (100), by category"
    era = browser.find_element(
        By.CSS_SELECTOR, '[data-taxonomy="msd"] .vocabulary-tags[data-category="era"]'
    )
    assert era.text.split("\n") == [
        "msd/00s",
        "msd/80s",
        "msd/90s",
        "msd/oldies",
        "msd/70s",
        "msd/60s",
    ]

    track = tmp_path / "track.ogg"
    track.write_bytes(encode("ogg", 6.0))
    upload(browser, track)
    assert wait_finished(browser) == "done", browser.find_element(By.ID, "error").text
    tags = bar_tags(browser)
    assert len(tags) == TOP_K
    assert all(tag.split("/")[0] in ("mtt", "msd") for tag in tags), tags
    groups = [g.text for g in browser.find_elements(By.CSS_SELECTOR, "#bars .bar-group h4")]
    assert len(groups) == len(set(groups))
    order = ["Genre", "Era", "Mood", "Instrument", "Vocals", "Tempo and dynamics", "Other"]
    assert groups == sorted(groups, key=order.index)
    assert browser.execute_script(HEATMAP_PIXELS)["rows"] == TOP_K

    # Choosing a vocabulary tags the file again with that vocabulary's tags only.
    Select(select).select_by_value("msd")
    wait_for(
        browser,
        lambda c: state(c) == "done" and all(t.startswith("msd/") for t in bar_tags(c)),
    )
    assert len(bar_tags(browser)) == TOP_K
    assert browser.find_element(By.ID, "vocabulary-summary").text == (
        "The model's tags (50), by category"
    )
    assert browser.find_element(By.ID, "top-k").get_attribute("max") == "50"
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-taxonomy="mtt"]')
