"""report.html in a real browser (headless Chromium through Selenium): the page's script runs
without console errors, the filters and the search work, and hostile model outputs stay text.

Skipped only when Chromium or its driver is not installed (.ci/run installs both)."""

from __future__ import annotations

import shutil

import pytest

from tests.report.test_report_formats import IMG, SCRIPT, GatedRuns, make_gated_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")


@pytest.fixture(scope="module")
def gated(tmp_path_factory) -> GatedRuns:
    return make_gated_runs(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,2000", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def opened(gated, browser):
    written = gated.report(gated.candidate_run)
    assert written.exit_code == 0, written.output
    browser.get((gated.folder(gated.candidate_run) / "report.html").as_uri())
    return browser


def _cards(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#item-list .item")


def _choose(driver, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_value(value)


def _search(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "f-search")
    box.send_keys(Keys.CONTROL, "a")  # typed, as a person would: clear() fires no input event
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def test_page_runs_without_console_errors(opened, gated):
    errors = [entry for entry in opened.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    candidate = {line["item_id"] for line in gated.results(gated.candidate_run)}
    assert len(_cards(opened)) == len(candidate)  # 63 items: one page, regressed and unchanged
    assert opened.execute_script("return document.getElementById('verdict').textContent") == "FAIL"


def test_filter_by_change_type_metric_and_slice(opened, gated):
    candidate = {line["item_id"]: line["scores"]["accuracy"]["value"] for line in gated.results(gated.candidate_run)}
    baseline = {line["item_id"]: line["scores"]["accuracy"]["value"] for line in gated.results(gated.baseline_run)}
    regressed = sorted(i for i in candidate if candidate[i] < baseline[i])
    _choose(opened, "f-change", "regressed")
    shown = [card.text.split()[0] for card in _cards(opened)]
    assert sorted(shown) == regressed
    _choose(opened, "f-change", "improved")
    assert _cards(opened) == []
    _choose(opened, "f-change", "")
    _choose(opened, "f-metric", "accuracy")
    _choose(opened, "f-slice", "all")
    assert len(_cards(opened)) == len(candidate)


def test_search_finds_items_by_input_and_output(opened):
    _choose(opened, "f-change", "")
    _search(opened, "invoice 19")  # an input: item t019 only
    assert [card.text.split()[0] for card in _cards(opened)] == ["t019"]
    _search(opened, "onerror")  # an output
    assert [card.text.split()[0] for card in _cards(opened)] == ["h-img"]
    _search(opened, "")
    assert len(_cards(opened)) == 63


def test_hostile_outputs_show_as_text_and_run_nothing(opened):
    assert opened.execute_script("return window.__pwned === undefined")
    assert opened.execute_script("return document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert opened.execute_script("return document.querySelectorAll('script').length") == 2  # ours and the data
    outputs = opened.execute_script(
        "return Array.from(document.querySelectorAll('#item-list .item')).filter(function (c) {"
        " return c.querySelector('.id').textContent.indexOf('h-') === 0; }).map(function (c) {"
        " return c.querySelectorAll('.sides pre')[1].textContent; })")
    assert IMG in outputs and SCRIPT in outputs
    assert opened.execute_script("return document.querySelector('#slices').textContent").count(
        "lang=<b onmouseover=window.__pwned=1>de") >= 1
    assert opened.execute_script("return window.__pwned === undefined")
