"""The report in a real headless browser (Debian's chromium + chromedriver, installed by
.ci/install): the gallery shows N thumbnails, clicking one opens that identity, the filters
select what the data says, and a screenshot is not blank."""
import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cluster.cli import main

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# (no network here: without the last three, Chromium's own calls are refused, many at a time)


def chrome(width: int = 1280, height: int = 900):
    """Headless Debian Chromium under its own chromedriver (also used by docs/report_shots.py)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, DRIVER) if shutil.which(p) is None]
    assert not missing, f"{missing} not installed: run bash .ci/install (Debian chromium, " \
                        "chromium-driver)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--window-size={width},{height}"]:
        opts.add_argument(f)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)  # no driver download


@pytest.fixture(scope="module")
def browser():
    d = chrome()
    yield d
    d.quit()


@pytest.fixture(scope="module")
def page(data10, tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "report"
    assert main(["report", data10, "--out", str(out), "--identities", "7"]) == 0
    return out / "index.html"


def visible(d, css):
    from selenium.webdriver.common.by import By

    return [e for e in d.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]


def test_gallery_click_opens_the_identity(browser, page):
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    thumbs = visible(browser, "#gallery .thumb")
    assert len(thumbs) == 7
    assert all(browser.execute_script("return arguments[0].naturalWidth", t.find_element(
        By.TAG_NAME, "img")) > 0 for t in thumbs)  # the images load from the folder
    thumbs[4].click()
    assert browser.current_url.endswith("#identity-4")
    assert browser.find_element(By.ID, "identity-title").text == "Identity 4"
    assert not visible(browser, "#gallery .thumb")  # the gallery gives way to the identity
    cards = visible(browser, "#frames .frame")
    assert len(cards) == 33
    assert {c.get_attribute("data-sample")[:6] for c in cards} == {"000004"}
    assert len(visible(browser, "#frames .frame img")) == 33 + 30  # 3 neutral: no heatmap
    png = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L")
    px = np.asarray(png, float)
    assert px.std() > 20 and len(np.unique(px)) > 50  # faces, text, heatmaps: not blank


def test_filters_select_what_the_data_says(browser, page, data10):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    t = pq.read_table(sorted(Path(data10, "frames").glob("*.parquet")),
                      columns=["identity", "gender", "pspi", "AU4"]).to_pylist()
    t = [r for r in t if r["identity"] < 7]
    browser.get(page.as_uri())
    gender = t[0]["gender"]
    Select(browser.find_element(By.ID, "f-gender")).select_by_visible_text(gender)
    want = {r["identity"] for r in t if r["gender"] == gender}
    shown = {int(e.get_attribute("data-id")) for e in visible(browser, "#gallery .thumb")}
    assert shown == want
    browser.find_element(By.ID, "f-reset").click()
    Select(browser.find_element(By.ID, "f-au")).select_by_visible_text("AU4")
    Select(browser.find_element(By.ID, "f-au-min")).select_by_visible_text("3")
    Select(browser.find_element(By.ID, "f-pspi-lo")).select_by_visible_text("10")
    hits = [r for r in t if r["AU4"] >= 3 and r["pspi"] >= 10]
    assert 0 < len({r["identity"] for r in hits}) and 0 < len(hits) < 33 * 7
    shown = {int(e.get_attribute("data-id")) for e in visible(browser, "#gallery .thumb")}
    assert shown == {r["identity"] for r in hits}
    ident = min(shown)
    browser.execute_script(f"location.hash = '#identity-{ident}'")
    n = len([r for r in hits if r["identity"] == ident])
    assert len(visible(browser, "#frames .frame")) == n
    assert browser.find_element(By.ID, "identity-count").text.startswith(f"{n} of 33 frames")
