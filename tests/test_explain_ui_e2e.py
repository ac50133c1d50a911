"""The page shows the predicted class's contributions as bars, in headless Chromium against a live server."""
from __future__ import annotations

import json

import pytest
import requests
from conftest import FEATURES, KNOWN_ROWS
from test_ui_e2e import UI_ENV, browser, fill, predict  # noqa: F401 - browser is a fixture

pytestmark = [pytest.mark.server]

from selenium.webdriver.common.by import By  # noqa: E402


def contributions(driver) -> list[tuple[str, str, float, str]]:
    """(feature, sign class, value, shown text) of each bar under the result."""
    out = []
    for item in driver.find_elements(By.CSS_SELECTOR, "#contributions li.contribution"):
        sign = "negative" if "negative" in item.get_attribute("class").split() else "positive"
        out.append((item.get_attribute("data-feature"), sign, float(item.get_attribute("data-value")),
                    item.find_element(By.CLASS_NAME, "contribution-value").text))
    return out


def test_each_prediction_shows_the_predicted_class_contributions(browser, live_server, tmp_path):  # noqa: F811
    with live_server(UI_ENV) as base:
        browser.get(base + "/")
        assert not browser.find_element(By.ID, "explanation").is_displayed()  # nothing before a prediction
        for row, index, label in KNOWN_ROWS:
            fill(browser, {name: str(v) for name, v in zip(FEATURES, row, strict=True)})
            predict(browser)
            assert browser.find_element(By.ID, "predicted-label").text == label
            assert browser.find_element(By.ID, "explanation").is_displayed()
            assert browser.find_element(By.ID, "explain-heading").text == f"Why {label}"
            api = requests.post(f"{base}/models/iris/explain", json={"features": row}, timeout=10).json()
            expected = api["contributions"][index]
            shown = contributions(browser)
            assert [feature for feature, *_ in shown] == list(FEATURES)
            assert [sign for _, sign, _, _ in shown] == ["negative" if v < 0 else "positive" for v in expected]
            assert [value for _, _, value, _ in shown] == pytest.approx(expected, rel=1e-12)
            assert [text for *_, text in shown] == [("\u2212" if v < 0 else "+") + f"{abs(v):.3f}" for v in expected]
            summary = browser.find_element(By.ID, "explain-summary").text
            assert summary.startswith(f"Each feature's contribution to the {label} score (decision function)")
            browser.save_screenshot(str(tmp_path / f"explained-{label}.png"))

        # A refused row hides the last explanation: no stale bars.
        fill(browser, {"petal_length": ""})
        predict(browser)
        assert not browser.find_element(By.ID, "explanation").is_displayed()
        logs = [entry["message"] for entry in browser.get_log("browser")]
        assert not [m for m in logs if "Content Security Policy" in m], logs


def test_a_forest_is_explained_and_a_model_that_cannot_be_is_said_so(browser, live_server, forest_artifact,  # noqa: F811
                                                                      tmp_path):
    from sklearn.neighbors import KNeighborsClassifier
    from test_explain import write_model

    knn = write_model(tmp_path / "knn", KNeighborsClassifier())
    env = {**UI_ENV, "IRIS_SERVICE_MODELS": json.dumps({"forest": str(forest_artifact), "knn": str(knn)})}
    with live_server(env) as base:
        browser.get(base + "/?model=forest")
        browser.find_element(By.CSS_SELECTOR, "button.example").click()
        predict(browser)
        assert browser.find_element(By.ID, "predicted-label").text == "setosa"
        assert [feature for feature, *_ in contributions(browser)] == list(FEATURES)
        assert browser.find_element(By.ID, "explain-summary").text.startswith(
            "Each feature's contribution to the setosa probability")

        browser.get(base + "/?model=knn")
        fill(browser, {name: str(v) for name, v in zip(FEATURES, KNOWN_ROWS[0][0], strict=True)})
        predict(browser)
        assert browser.find_element(By.ID, "predicted-label").text == "setosa"  # the prediction still shows
        assert browser.find_element(By.ID, "explain-heading").text == "No explanation"
        assert browser.find_element(By.ID, "explain-summary").text.startswith(
            "Model 'knn' 1 is a KNeighborsClassifier; explanations are computed for")
        assert contributions(browser) == []
