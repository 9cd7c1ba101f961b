"""report.html in a real headless browser: Debian's Chromium driven by Selenium (scripts/test-deps.sh installs
both; CI fails rather than skips without them)."""

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli.app import app
from posttrain.telemetry.report_html import problem_status

runner = CliRunner()
GOOD = "<think>work</think><answer>{}</answer>"
# id -> (question, gold, baseline's two completions, the model's two completions)
PROBLEMS = {
    "p1": ("1+2", "3", [GOOD.format(5), GOOD.format(5)], [GOOD.format(3), GOOD.format(3)]),  # fixed
    "p2": ("2+2", "4", [GOOD.format(4), GOOD.format(4)], [GOOD.format(4), GOOD.format(4)]),  # right in both
    "p3": ("3+3", "6", [GOOD.format(7), GOOD.format(7)], ["six, no tags", "no answer"]),  # lost its format
    "p4": ("<b>4+4</b>", "8", [GOOD.format(9), GOOD.format(9)], [GOOD.format(7), GOOD.format(9)]),  # wrong in both
}


def _eval(tmp_path: Path, name: str, which: int, baseline: Path | None = None) -> Path:
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(json.dumps({"id": i, "prompt": q, "answer": a}) + "\n" for i, (q, a, *_) in PROBLEMS.items())
    )
    completions = tmp_path / f"{name}.jsonl"
    completions.write_text(
        "".join(json.dumps({"id": i, "completions": row[2 + which]}) + "\n" for i, row in PROBLEMS.items())
    )
    out = tmp_path / name
    args = ["eval", "--completions", str(completions), "--data", str(data), "--k", "1,2", "--output-dir", str(out)]
    result = runner.invoke(app, [*args, *(["--baseline", str(baseline / "report.json")] if baseline else [])])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        message = "no system Chromium/chromedriver: run scripts/test-deps.sh (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


def _shown(driver) -> list[str]:
    rows = driver.find_elements("css selector", "tr.problem")
    return [row.find_element("css selector", "td").text for row in rows if row.is_displayed()]


def _choose(driver, select_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", select_id)).select_by_value(value)


@pytest.mark.slow
def test_report_html_filters_compares_and_shows_rewards_in_a_real_browser(tmp_path, browser):
    baseline = _eval(tmp_path, "baseline", 0)
    model = _eval(tmp_path, "model", 1, baseline=baseline)
    page = model / "report.html"
    text = page.read_text()
    assert "<b>4+4</b>" not in text and "&lt;b&gt;4+4&lt;/b&gt;" in text  # a model's text is escaped
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch
    assert "data:image/png;base64," in text  # the pass@k figure is embedded

    browser.get(page.as_uri())
    assert _shown(browser) == ["p1", "p2", "p3", "p4"]
    assert browser.find_element("id", "shown").text == "4 of 4 problems shown"

    _choose(browser, "run", "model")
    _choose(browser, "status", "wrong")
    assert _shown(browser) == ["p4"]
    _choose(browser, "status", "format-failed")
    assert _shown(browser) == ["p3"]
    _choose(browser, "status", "correct")
    assert _shown(browser) == ["p1", "p2"]
    _choose(browser, "run", "baseline")
    assert _shown(browser) == ["p2"]
    _choose(browser, "status", "wrong")
    assert _shown(browser) == ["p1", "p3", "p4"]
    browser.find_element("id", "changed").click()  # only where baseline and model differ
    assert _shown(browser) == ["p1", "p3"]
    assert browser.find_element("id", "shown").text == "2 of 4 problems shown"

    # A problem opens on click: both models' completions side by side, each with its reward breakdown.
    browser.find_element("css selector", "tr.problem[data-index='0']").click()
    detail = browser.find_element("id", "detail-0")
    assert detail.is_displayed()
    columns = detail.find_elements("css selector", ".column")
    assert [c.find_element("css selector", "h3").text for c in columns] == ["baseline", "model"]
    assert "answer 5" in columns[0].text and "accuracy 0" in columns[0].text
    assert "answer 3" in columns[1].text and "accuracy 1" in columns[1].text and "format 1" in columns[1].text
    browser.find_element("id", "search").send_keys("3+3")
    assert _shown(browser) == ["p3"] and not detail.is_displayed()  # a hidden problem's detail closes too

    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_a_problem_status_follows_the_majority_of_its_samples():
    right, wrong, unparsed = {"correct": True, "extracted": "3"}, {"correct": False, "extracted": "5"}, {}
    assert problem_status([right, wrong]) == "correct"  # half is enough
    assert problem_status([right, wrong, wrong]) == "wrong"
    assert problem_status([unparsed, unparsed, wrong]) == "format-failed"
    assert problem_status([unparsed, wrong]) == "wrong"
    assert problem_status([]) == "wrong"
