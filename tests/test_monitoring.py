"""deploy/monitoring/: the alert rules pass promtool, and every query names a metric we export (issue 20, item 4)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, create_app_for_test
from test_drift import drawn_like_training, serve

MONITORING = ROOT / "deploy" / "monitoring"
ALERTS = ("IrisFeatureDrift", "IrisHighErrorRate", "IrisHighLatencyP99", "IrisModelNotReady",
          "IrisPayloadRecordsDropped")
#: Exported by the payload log (its own module and tests); a scrape here may not have one configured.
OTHER_EXPORTERS = frozenset({"iris_payload_log_dropped_total"})
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                       "bool", "offset", "inf", "nan"})


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Debian's promtool (``.ci/run`` installs the prometheus package)."""
    tool = shutil.which("promtool")
    assert tool is not None, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return subprocess.run([tool, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=MONITORING)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords or labels."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings first: a regex may hold anything
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    expr = _GROUPING.sub(" ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if match.group() not in _KEYWORDS and not expr[match.end():].lstrip().startswith("("):
            names.add(match.group())
    return names


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def variable_metrics() -> set[str]:
    """Metrics the dashboard's variables list labels of: ``label_values(metric{...}, label)``."""
    found = set()
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        found |= {m.group(1) for m in re.finditer(r"label_values\(\s*([A-Za-z_:][\w:]*)", text)}
    return found


def test_metric_names_reads_only_metrics() -> None:
    expr = 'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{job=~"$job", x="b c"}[5m]))) / on(job) b > 1e3'
    assert metric_names(expr) == {"a_bucket", "b"}


def test_alert_rules_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_alert_rules_fire_and_stay_quiet_as_their_unit_tests_say() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    tested = {case["alertname"] for test in yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
              for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert tested == set(ALERTS)  # every alert has a case where it fires (and one where it does not)


def test_example_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query as a recording rule (Grafana's variables filled in)."""
    rules = [
        {"record": f"dashboard:panel_{panel['id']}_{target['refId']}",
         "expr": target["expr"].replace("$__rate_interval", "5m").replace("$job", ".*").replace("$model", ".*")}
        for panel in dashboard()["panels"] for target in panel["targets"]
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    titles = [panel["title"] for panel in dashboard()["panels"]]
    assert titles[:4] == ["Requests per second", "Request latency p50 / p99", "Predicted classes per second",
                          "Feature drift (PSI)"]
    latency = dashboard()["panels"][1]["targets"]
    assert [t["legendFormat"] for t in latency] == ["p50", "p99"]


@pytest.fixture(scope="module")
def exported(iris_artifact: Path) -> set[str]:
    """Every sample name a real app's /metrics shows after it answered (drift series included)."""
    client = create_app_for_test({"MODEL_PATH": str(iris_artifact)}).test_client()
    serve(client, drawn_like_training(150))
    text = client.get("/metrics").get_data(as_text=True)
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_every_metric_the_rules_and_dashboard_read_is_exported(exported: set[str]) -> None:
    named = set().union(*map(metric_names, rule_expressions() + dashboard_expressions())) | variable_metrics()
    assert named - exported - OTHER_EXPORTERS == set()
    # Not vacuous: the queries do read the series the issue names.
    assert {"iris_feature_psi", "iris_http_requests_total", "iris_http_request_duration_seconds_bucket",
            "iris_predictions_total", "iris_model_ready", "iris_feature_out_of_range_total",
            "iris_payload_log_dropped_total"} <= named


def test_the_readme_explains_every_alert_rule_beside_the_dashboard_picture():
    """Issue 20, item 6: the README's "Monitoring the model" names each rule alerts.yml defines."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Monitoring the model\n", 1)[1].split("\n## ", 1)[0]
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))
    defined = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert defined == set(ALERTS)
    for name in ALERTS:
        assert f"**{name}**:" in section, name
    picture = re.search(r"!\[[^\]]+\]\(([^)]+\.png)\)", section)
    assert picture is not None and (ROOT / picture.group(1)).is_file()
