"""`make screenshots` (tools/screenshots.py): every image is produced, is a real picture, and shows its page.

* The expensive test regenerates all images into a temporary folder (never
  into ``output/``) against a real server and worker, with Debian's
  chromium. It is skipped only when chromium is not installed, and then
  fails instead when ``ENERGY_FLOWS_REQUIRE_BROWSER=1`` (set by ``.ci/run``).
* The cheap tests check that ``output/README.md`` and the committed images
  match the declared list of shots, so neither can drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from tools import screenshots

OUTPUT = Path(__file__).resolve().parent.parent / "output"

#: A blank (or one-colour) image has almost no spread and a handful of colours.
MIN_STDDEV = 8.0
MIN_COLOURS = 32


def assert_real_picture(path: Path) -> None:
    """A PNG with content: not blank, not one flat colour."""
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path.name} is not a PNG"
        rgb = image.convert("RGB")
        spread = max(ImageStat.Stat(rgb).stddev)
        colours = rgb.getcolors(maxcolors=1 << 16)
        n_colours = len(colours) if colours is not None else 1 << 16
    assert spread > MIN_STDDEV, f"{path.name} looks blank (pixel std {spread:.1f})"
    assert n_colours > MIN_COLOURS, f"{path.name} has only {n_colours} colours"


@pytest.mark.browser
@pytest.mark.server
@pytest.mark.timeout(420)
def test_screenshots_are_taken_and_show_their_pages(tmp_path: Path, chromium: str) -> None:
    out = tmp_path / "output"
    entries = screenshots.take_screenshots(out, home=tmp_path / "home", quiet=True)

    files = screenshots.image_files()
    assert [e["file"] for e in entries] == files
    manifest = json.loads((out / "manifest.json").read_text())
    by_file = {e["file"]: e for e in manifest["images"]}
    assert sorted(by_file) == sorted(files)

    for name in files:
        path = out / name
        assert path.is_file(), f"{name} was not produced"
        assert_real_picture(path)

    for shot in screenshots.SHOTS:
        entry = by_file[shot.file]
        assert entry["kind"] == "page"
        assert set(entry["expected"]) == set(shot.expect)
        missing = [text for text, found in entry["expected"].items() if not found]
        assert not missing, f"{shot.file}: {missing} not in the page when it was taken"
        unwanted = [text for text, found in entry["unwanted"].items() if found]
        assert not unwanted, f"{shot.file}: {unwanted} in the page although it must not be"
        assert entry["loading_indicators"] == 0, f"{shot.file} was taken while loading"
        if shot.tab:
            assert entry["tab_active"], f"{shot.file}: the tab {shot.tab!r} was not open"
        assert entry["canvases"] >= shot.min_canvases, f"{shot.file}: its plots were not drawn"
        with Image.open(out / shot.file) as image:
            assert image.size == (
                screenshots.VIEWPORT["width"],
                screenshots.VIEWPORT["height"],
            )

    assert not list(out.glob("failed-*")), "a page was photographed as failed"
    assert (out / "README.md").read_text() == screenshots.readme_text()


def test_file_names_say_what_they_show() -> None:
    names = screenshots.image_files()
    assert len(names) == len(set(names)), "two shots share a file name"
    joined = " ".join(names)
    for word in ("dashboard", "flow", "deployment", "work-pool", "queue", "worker", "load", "dask"):
        assert word in joined, f"no image name mentions {word!r}"
    assert {"forecast.png", "run-timeline.png"} <= set(names)
    assert all(name.endswith(".png") for name in names)


def test_output_readme_lists_every_image_and_every_listed_image_exists() -> None:
    readme = (OUTPUT / "README.md").read_text()
    assert readme == screenshots.readme_text(), (
        "output/README.md is out of date: run `make screenshots` (it is generated from "
        "tools/screenshots.py)"
    )
    for name in screenshots.image_files():
        assert f"[`{name}`]({name})" in readme, f"output/README.md does not list {name}"
    listed = {
        line.split("](", 1)[1].split(")", 1)[0] for line in readme.splitlines() if "](" in line
    }
    for name in listed:
        assert (OUTPUT / name).is_file(), f"output/README.md lists {name}, not in output/"


def test_committed_images_are_real_pictures() -> None:
    for name in screenshots.image_files():
        path = OUTPUT / name
        assert path.is_file(), f"output/{name} is missing: run `make screenshots`"
        assert_real_picture(path)


#: Tabs as three UIs could mark them up: Prefect's (its design system's class names),
#: an accessible one (ARIA roles), and one with neither. Clicking a tab makes it active.
_TAB_PAGES = {
    "prefect": """<ul><li class="p-tab p-tab__active">Runs</li><li class="p-tab">Logs</li></ul>
      <script>for (const li of document.querySelectorAll("li.p-tab")) li.onclick = () => {
        for (const o of document.querySelectorAll("li.p-tab")) o.classList.remove("p-tab__active");
        li.classList.add("p-tab__active"); document.getElementById("c").innerText = li.innerText;
      };</script><p id="c">Runs</p>""",
    "aria": """<div><span role="tab" aria-selected="true">Runs</span>
      <span role="tab" aria-selected="false">Logs</span></div>
      <script>for (const t of document.querySelectorAll("[role=tab]")) t.onclick = () => {
        for (const o of document.querySelectorAll("[role=tab]")) o.setAttribute("aria-selected", "false");
        t.setAttribute("aria-selected", "true"); document.getElementById("c").innerText = t.innerText;
      };</script><p id="c">Runs</p>""",
    "plain": """<ul><li>Runs</li><li>Logs</li></ul>
      <script>for (const li of document.querySelectorAll("li")) li.onclick = () => {
        document.getElementById("c").innerText = "content of " + li.innerText;
      };</script><p id="c">Runs</p>""",
}


@pytest.mark.browser
@pytest.mark.parametrize("markup", sorted(_TAB_PAGES))
def test_the_wanted_tab_is_found_and_clicked_without_prefects_class_names(
    chromium: str, markup: str
) -> None:
    """The page-state script clicks the wanted tab once, then reports it active."""
    from tools.browser import launch_chromium

    with launch_chromium() as browser:
        page = browser.new_page()
        page.set_content(_TAB_PAGES[markup])
        first = page.evaluate(screenshots.PAGE_STATE_JS, [[], [], "Logs", False])
        assert first["tabActive"] is False  # Runs was active: Logs gets clicked
        second = page.evaluate(screenshots.PAGE_STATE_JS, [[], [], "Logs", False])
        assert second["tabActive"] is True, (markup, second)
        assert "Logs" in page.inner_text("#c")
        # A tab that is not on the page is never reported active.
        gone = page.evaluate(screenshots.PAGE_STATE_JS, [[], [], "Artifacts", False])
        assert gone["tabActive"] is False
