"""The page at ``/`` in a real headless Chromium against a live waitress server.

Selenium drives Debian's ``chromium`` through ``chromedriver`` from the system
(never Selenium Manager's downloads). Each state gets a screenshot under the
test's tmp dir; ``IRIS_UPDATE_SCREENSHOT=1`` also copies the main one to
``docs/screenshot.png`` for the README.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import requests
from conftest import KNOWN_ROWS, ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
    ),
]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT_SECONDS = 20
UI_ENV = {"IRIS_SERVICE_UI_ENABLED": "true"}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """One headless Chromium for the module, with a fresh profile, quit in finally."""
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(WAIT_SECONDS)
        yield driver
    finally:
        driver.quit()


def fill(driver, values: dict[str, str]) -> None:
    for name, value in values.items():
        field = driver.find_element(By.NAME, name)
        field.clear()
        if value:
            field.send_keys(value)


def predict(driver) -> None:
    """Press Predict and wait until the page has shown the API's answer."""
    driver.execute_script("delete document.getElementById('predict-form').dataset.state")
    driver.find_element(By.ID, "predict").click()
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: d.find_element(By.ID, "predict-form").get_attribute("data-state") == "done"
    )


def bars(driver) -> dict[str, float]:
    """Class -> the percentage each bar shows."""
    out = {}
    for bar in driver.find_elements(By.CSS_SELECTOR, "#bars .bar"):
        out[bar.get_attribute("data-class")] = float(bar.find_element(By.CLASS_NAME, "bar-value").text.rstrip("%"))
    return out


def message_for(driver, name: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f".message[data-for='{name}']").text


def assert_refused_field(driver, name: str, message: str):
    """The API's message is next to the field, which is marked invalid and has the focus to fix it."""
    field = driver.find_element(By.NAME, name)
    assert message_for(driver, name) == message
    assert field.get_attribute("aria-invalid") == "true"
    assert driver.switch_to.active_element == field
    return field


def test_known_rows_show_their_class_and_bars(browser, live_server, tmp_path):
    with live_server(UI_ENV) as base:
        browser.get(base + "/")
        assert browser.title == "iris-service · iris"
        browser.save_screenshot(str(tmp_path / "01-loaded.png"))
        for row, _index, label in KNOWN_ROWS:
            fill(browser, {name: str(v) for name, v in zip(
                ("sepal_length", "sepal_width", "petal_length", "petal_width"), row, strict=True)})
            predict(browser)
            assert browser.find_element(By.ID, "predicted-label").text == label
            shown = bars(browser)
            api = requests.post(f"{base}/models/iris/predict", json={"features": row}, timeout=10).json()
            assert set(shown) == {"setosa", "versicolor", "virginica"}
            for cls, p in api["probabilities"].items():
                assert shown[cls] == pytest.approx(p * 100, abs=0.051)
            assert max(shown, key=shown.get) == label
            winner = browser.find_element(By.CSS_SELECTOR, "#bars .bar.winner")
            assert winner.get_attribute("data-class") == label
            browser.save_screenshot(str(tmp_path / f"02-predicted-{label}.png"))
        if os.environ.get("IRIS_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(tmp_path / "02-predicted-versicolor.png", ROOT / "docs" / "screenshot.png")


def test_example_buttons_fill_a_typical_row_of_each_class(browser, live_server, tmp_path):
    with live_server(UI_ENV) as base:
        browser.get(base + "/")
        buttons = browser.find_elements(By.CSS_SELECTOR, "button.example")
        assert [b.text for b in buttons] == ["setosa", "versicolor", "virginica"]
        for button in buttons:
            button.click()
            predict(browser)
            assert browser.find_element(By.ID, "predicted-label").text == button.text
        browser.save_screenshot(str(tmp_path / "03-example-buttons.png"))


def test_empty_field_shows_the_api_message_next_to_it(browser, live_server, tmp_path):
    with live_server(UI_ENV) as base:
        browser.get(base + "/")
        fill(browser, {"petal_length": ""})
        predict(browser)
        assert_refused_field(browser, "petal_length", "Must be a number, not null.")
        assert message_for(browser, "sepal_length") == ""
        assert browser.find_element(By.ID, "result-summary").text == "No prediction: the input was refused."
        values = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#bars .bar-value")]
        assert values == ["–", "–", "–"]  # no stale bars from an earlier answer
        browser.save_screenshot(str(tmp_path / "04-empty-field.png"))

        # Fixing the field clears the error and predicts again.
        fill(browser, {"petal_length": "1.4"})
        predict(browser)
        assert message_for(browser, "petal_length") == ""
        assert browser.find_element(By.ID, "predicted-label").text == "setosa"


def test_out_of_range_value_is_flagged_next_to_the_field(browser, live_server, tmp_path):
    with live_server(UI_ENV) as base:
        browser.get(base + "/")
        fill(browser, {"petal_width": "9"})
        predict(browser)
        assert message_for(browser, "petal_width") == (
            "Outside the training range (0.1 – 2.5): the model is extrapolating."
        )
        assert browser.find_element(By.ID, "predicted-label").text  # still answered
        browser.save_screenshot(str(tmp_path / "05-out-of-range.png"))


def test_keyboard_only_use_and_screen_reader_hooks(browser, live_server):
    with live_server(UI_ENV) as base:
        browser.get(base + "/")
        for field in browser.find_elements(By.CSS_SELECTOR, "input[type=number]"):
            label = browser.find_element(By.CSS_SELECTOR, f"label[for='{field.get_attribute('id')}']")
            assert label.text.lower().startswith(field.get_attribute("name").replace("_", " "))
        assert browser.find_element(By.ID, "result").get_attribute("aria-live") == "polite"

        browser.find_element(By.TAG_NAME, "body").click()
        order = []
        for _ in range(12):  # bounded: the page has fewer focusable elements than this
            browser.switch_to.active_element.send_keys(Keys.TAB)
            active = browser.switch_to.active_element
            order.append(active.get_attribute("name") or active.get_attribute("id") or active.text)
        fields = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        start = order.index("sepal_length")
        assert order[start:start + 8] == [*fields, "setosa", "versicolor", "virginica", "predict"]

        # Enter in a field submits, like any form.
        field = browser.find_element(By.NAME, "petal_length")
        field.clear()
        field.send_keys("4.7")
        browser.find_element(By.NAME, "sepal_length").clear()
        browser.find_element(By.NAME, "sepal_length").send_keys("7.0")
        fill(browser, {"sepal_width": "3.2", "petal_width": "1.4"})
        browser.execute_script("delete document.getElementById('predict-form').dataset.state")
        browser.find_element(By.NAME, "petal_width").send_keys(Keys.ENTER)
        WebDriverWait(browser, WAIT_SECONDS).until(
            lambda d: d.find_element(By.ID, "predict-form").get_attribute("data-state") == "done"
        )
        assert browser.find_element(By.ID, "predicted-label").text == "versicolor"


def test_model_picker_and_card_for_several_models(browser, live_server, forest_artifact, tmp_path):
    env = {**UI_ENV, "IRIS_SERVICE_MODELS": json.dumps({"forest": str(forest_artifact)})}
    with live_server(env) as base:
        browser.get(base + "/")
        picker = browser.find_element(By.ID, "model-picker")
        options = [o.get_attribute("value") for o in picker.find_elements(By.TAG_NAME, "option")]
        assert options == ["iris", "forest"]
        picker.find_element(By.CSS_SELECTOR, "option[value='forest']").click()
        WebDriverWait(browser, WAIT_SECONDS).until(lambda d: d.title == "iris-service · forest")
        card = dict(zip(
            [e.text for e in browser.find_elements(By.CSS_SELECTOR, "dl.card dt")],
            [e.text for e in browser.find_elements(By.CSS_SELECTOR, "dl.card dd")], strict=True,
        ))
        assert card["Name"] == "forest"
        assert card["Estimator"] == "RandomForestClassifier"
        assert card["Accuracy"].endswith("%")
        browser.find_element(By.CSS_SELECTOR, "button.example").click()
        predict(browser)
        assert browser.find_element(By.ID, "predicted-label").text == "setosa"
        browser.save_screenshot(str(tmp_path / "06-forest.png"))
        links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "nav a")}
        assert links == {"API docs": base + "/docs", "OpenAPI": base + "/openapi.json"}


def test_out_of_range_value_refused_by_the_api_is_shown_next_to_the_field(browser, live_server, tmp_path):
    with live_server({**UI_ENV, "IRIS_SERVICE_INPUT_RANGE_POLICY": "reject"}) as base:
        browser.get(base + "/")
        fill(browser, {"petal_width": "9"})
        predict(browser)
        # The server's message with the allowed range, not the page's extrapolation warning.
        field = assert_refused_field(
            browser, "petal_width", "Must be between 0.1 and 2.5 (the training range); got 9."
        )
        assert message_for(browser, "petal_length") == ""
        assert browser.find_element(By.ID, "form-error").text == "Please correct the highlighted field."
        assert browser.find_element(By.ID, "result-summary").text == "No prediction: the input was refused."
        browser.save_screenshot(str(tmp_path / "07-out-of-range-rejected.png"))

        fill(browser, {"petal_width": "0.2"})
        predict(browser)
        assert message_for(browser, "petal_width") == ""
        assert field.get_attribute("aria-invalid") is None
        assert browser.find_element(By.ID, "predicted-label").text == "setosa"


PAGE_KEY = "page-key-0123456789"


def test_with_api_keys_the_page_asks_for_the_key_and_says_when_it_gets_401(browser, live_server, tmp_path):
    with live_server({**UI_ENV, "IRIS_SERVICE_API_KEYS": f"other-key,{PAGE_KEY}"}) as base:
        browser.get(base + "/")
        browser.execute_script("window.sessionStorage.clear()")
        key_field = browser.find_element(By.ID, "api-key")
        assert key_field.get_attribute("type") == "password"
        assert browser.find_element(By.CSS_SELECTOR, "label[for='api-key']").text == "API key"
        setosa = {name: str(v) for name, v in zip(
            ("sepal_length", "sepal_width", "petal_length", "petal_width"), KNOWN_ROWS[0][0], strict=True)}
        fill(browser, setosa)

        # No key: the page says the server answered 401 and sends the person to the key field.
        predict(browser)
        assert browser.find_element(By.ID, "api-key-msg").text == (
            "401 Unauthorized: this server needs an API key. Enter it here."
        )
        assert browser.find_element(By.ID, "form-error").text == "No prediction: see the API key field."
        assert browser.find_element(By.ID, "result-summary").text == "No prediction: not authorised."
        assert key_field.get_attribute("aria-invalid") == "true"
        assert browser.switch_to.active_element == key_field
        assert message_for(browser, "petal_length") == ""  # the row was not blamed
        browser.save_screenshot(str(tmp_path / "08-api-key-needed.png"))

        # A wrong key is refused with its own message.
        key_field.send_keys("not-the-key")
        predict(browser)
        assert browser.find_element(By.ID, "api-key-msg").text == (
            "401 Unauthorized: the API key was refused. Check it and try again."
        )

        # A key no HTTP header can carry is explained, not reported as "could not reach the server".
        key_field.clear()
        key_field.send_keys("clé")
        predict(browser)
        assert browser.find_element(By.ID, "api-key-msg").text == (
            "An API key is plain text: letters, digits and punctuation only."
        )

        # The right key: Predict answers, and the key is nowhere but the field and this tab's sessionStorage.
        key_field.clear()
        key_field.send_keys(PAGE_KEY)
        predict(browser)
        assert browser.find_element(By.ID, "predicted-label").text == "setosa"
        assert browser.find_element(By.ID, "form-error").text == ""
        assert browser.find_element(By.ID, "api-key-msg").text == ""
        assert key_field.get_attribute("aria-invalid") is None
        assert browser.execute_script("return window.sessionStorage.getItem('iris-service.api-key')") == PAGE_KEY
        assert browser.execute_script("return window.localStorage.length") == 0
        assert browser.get_cookies() == []
        assert PAGE_KEY not in browser.current_url
        browser.save_screenshot(str(tmp_path / "09-api-key-predicted.png"))

        # A reload in the same tab keeps the key; Enter in the key field predicts.
        browser.refresh()
        key_field = browser.find_element(By.ID, "api-key")
        assert key_field.get_attribute("value") == PAGE_KEY
        assert PAGE_KEY not in browser.page_source  # a typed value is no attribute: only the field holds it
        browser.find_element(By.CSS_SELECTOR, "button.example").click()
        browser.execute_script("delete document.getElementById('predict-form').dataset.state")
        key_field.send_keys(Keys.ENTER)
        WebDriverWait(browser, WAIT_SECONDS).until(
            lambda d: d.find_element(By.ID, "predict-form").get_attribute("data-state") == "done"
        )
        assert browser.find_element(By.ID, "predicted-label").text == "setosa"
        assert PAGE_KEY not in browser.current_url

        # Emptying the field forgets the key: the next Predict is a 401 again, and so is a reload.
        key_field.clear()
        predict(browser)
        assert browser.find_element(By.ID, "api-key-msg").text.startswith("401 Unauthorized: this server needs")
        assert browser.execute_script("return window.sessionStorage.getItem('iris-service.api-key')") is None

        # The page still runs only its own script: the CSP held (no violation was reported).
        logs = [entry["message"] for entry in browser.get_log("browser")]
        assert not [m for m in logs if "Content Security Policy" in m], logs
