"""The clinician page in headless Chromium (Debian's), against a real uvicorn server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import running_server
from womac.data.contract import FIELD_BY_NAME, FIELDS, Role
from womac.settings import Settings

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PATIENT = {
    "age": "64",
    "sex": "female",
    "bmi": "34",
    "joint": "knee",
    "kl_grade": "3",
    "womac_pain_0": "9",
    "womac_stiffness_0": "4",
    "womac_function_0": "30",
    "prp": "true",
    "rehab": "true",
}

if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip(
        "Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "chromium must be installed for the page tests"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(
    trained: Any, store: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with running_server(store, tmp_path_factory.mktemp("page-server")) as url:
        yield url


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(f"{server}/")
    yield opened
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def fill(page: Any, patient: dict[str, str]) -> None:
    for name, value in patient.items():
        selector = f"#f-{name}"
        if page.locator(selector).evaluate("e => e.tagName") == "SELECT":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)


def api_payload(patient: dict[str, str]) -> dict[str, Any]:
    payload: dict[str, Any] = {"kl_grade": None}
    for name, value in patient.items():
        spec = FIELD_BY_NAME[name]
        if value in ("true", "false"):
            payload[name] = value == "true"
        elif spec.is_numeric:
            payload[name] = float(value)
        else:
            payload[name] = value
    return payload


def test_form_is_generated_from_the_contract_with_labels_units_and_ranges(page: Any) -> None:
    for spec in FIELDS:
        if spec.role is Role.OUTCOME:
            continue
        control = page.locator(f"#f-{spec.name}")
        assert control.count() == 1, spec.name
        label = page.locator(f'label[for="f-{spec.name}"]')
        assert spec.label in label.inner_text(), spec.name
        if spec.is_numeric and spec.name != "kl_grade":
            hint = page.locator(f"#h-{spec.name}").inner_text()
            assert f"{spec.minimum:g}-{spec.maximum:g}" in hint, spec.name
            if spec.unit and spec.unit != "points":
                assert spec.unit in label.inner_text() + hint, spec.name
        optional = spec.role is Role.IDENTIFIER or not spec.required
        assert ("optional" in label.inner_text()) == optional, spec.name
        # Defaults are left empty rather than guessed.
        assert control.input_value() == "", spec.name


def test_estimate_shows_the_services_numbers_range_chance_and_a_drawn_chart(
    page: Any, server: str
) -> None:
    fill(page, PATIENT)
    page.click("#estimate")
    page.wait_for_selector("#result:not([hidden])")

    answer = httpx.post(f"{server}/v1/predict", json=api_payload(PATIENT)).json()
    expected = answer["expected_improvement"]
    sign = "+" if expected >= 0 else "\N{MINUS SIGN}"
    assert page.inner_text("#r-expected") == f"{sign}{abs(expected):.1f}"
    baseline = 9 + 4 + 30
    assert f"{round(100 * expected / baseline)}% of the baseline total of {baseline}" in (
        page.inner_text("#r-percent")
    )
    interval = page.inner_text("#r-interval")
    assert f"{answer['interval']['lower']:.1f} to {answer['interval']['upper']:.1f}" in interval
    assert page.inner_text("#r-probability") == f"{round(100 * answer['p_clinically_important'])}%"
    assert "Candidate" in page.inner_text("#r-eligibility")

    bars = page.locator("#r-chart svg rect.bar")
    assert bars.count() >= 4  # average, at least two fields, this patient
    widths = [float(w) for w in bars.evaluate_all("rs => rs.map(r => r.getAttribute('width'))")]
    assert all(width > 0 for width in widths)
    sentences = page.locator("#r-sentences li").all_inner_texts()
    assert len(sentences) == 3
    assert all("the expected improvement by" in s for s in sentences)
    top = max(answer["explanation"]["contributions"], key=lambda c: abs(c["contribution"]))
    assert sentences[0].startswith(top["label"])
    assert f"{abs(top['contribution']):.1f} points" in sentences[0]


def test_an_invalid_bmi_is_shown_beside_the_field_before_anything_is_sent(
    page: Any,
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    fill(page, PATIENT | {"bmi": "abc"})
    page.click("#estimate")
    error = page.locator("#e-bmi")
    assert "number" in error.inner_text()
    assert page.locator("#f-bmi").get_attribute("aria-invalid") == "true"
    assert not any("/v1/predict" in url for url in requests)
    fill(page, {"bmi": "80"})
    page.click("#estimate")
    assert "12 to 70" in page.locator("#e-bmi").inner_text()
    assert page.evaluate("document.activeElement.id") == "f-bmi"


def test_a_server_422_is_shown_beside_the_field_it_names(page: Any) -> None:
    # Bypass the page's own range check, so the server is the one to refuse.
    page.evaluate("document.getElementById('f-bmi').removeAttribute('data-min')")
    fill(page, PATIENT | {"bmi": "80"})
    with page.expect_response(lambda response: "/v1/predict" in response.url) as response:
        page.click("#estimate")
    assert response.value.status == 422
    message = page.locator("#e-bmi").inner_text()
    assert "70" in message
    assert page.locator("#result").is_hidden()


def test_keyboard_alone_fills_and_submits_the_form(page: Any) -> None:
    fill(page, PATIENT)
    page.focus("#f-womac_function_0")
    page.keyboard.press("Enter")
    page.wait_for_selector("#result:not([hidden])")
    # Focus moves to the answer, so a screen reader reads it next.
    assert page.evaluate("document.activeElement.id") == "result"


def test_every_control_has_a_label_and_the_page_declares_its_language(page: Any) -> None:
    assert page.get_attribute("html", "lang") == "en"
    unlabelled = page.evaluate(
        """() => Array.from(document.querySelectorAll('input, select'))
            .filter(e => !e.closest('[hidden]'))
            .filter(e => !document.querySelector(`label[for="${e.id}"]`))
            .map(e => e.id)"""
    )
    assert unlabelled == []


def test_prints_on_one_page_without_the_form(page: Any) -> None:
    fill(page, PATIENT)
    page.click("#estimate")
    page.wait_for_selector("#result:not([hidden])")
    page.emulate_media(media="print")
    assert page.locator("#patient-form").is_hidden()
    assert page.locator("#result").is_visible()
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") == 1


def test_screenshots_at_desktop_and_tablet_width(page: Any) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    fill(page, PATIENT)
    page.click("#estimate")
    page.wait_for_selector("#result:not([hidden]) svg")
    page.screenshot(path=SCREENSHOTS / "desktop.png", full_page=True)
    page.set_viewport_size({"width": 820, "height": 1180})
    # At tablet width the layout is one column: the answer sits below the form.
    form_box = page.locator(".form-panel").bounding_box()
    result_box = page.locator("#result").bounding_box()
    assert result_box["y"] > form_box["y"] + form_box["height"] - 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 820
    page.screenshot(path=SCREENSHOTS / "tablet.png", full_page=True)
    assert (SCREENSHOTS / "desktop.png").stat().st_size > 10_000
    assert (SCREENSHOTS / "tablet.png").stat().st_size > 10_000


def test_the_api_docs_work_with_no_internet(browser: Any, server: str) -> None:
    """Swagger UI's script and style come from the service; anything else is cut off, as at
    a clinic with no internet, and the operations are still listed."""
    context = browser.new_context()
    outside: list[str] = []

    def offline(route: Any) -> None:
        if route.request.url.startswith(server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    docs = context.new_page()
    docs.goto(f"{server}/docs")
    docs.wait_for_selector(".opblock-summary-path", timeout=15_000)
    paths = docs.locator(".opblock-summary-path").all_inner_texts()
    context.close()
    assert "/v1/predict" in paths
    assert "/v1/predict/batch" in paths
    assert outside == []
