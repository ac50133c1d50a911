"""Render the dashboard's panels from real data to a PNG: ``python deploy/monitoring/render_dashboard.py OUT.png``.

Starts iris-service (waitress) and Debian's Prometheus on free 127.0.0.1 ports,
sends rows drawn like the training data for a while and then rows whose
petal_length is shifted, asks Prometheus for each panel of
``grafana-dashboard.json`` over that time (its own queries, Grafana's
variables filled in), draws the series as SVG in a static page and has
headless Chromium screenshot it. Grafana itself is not needed: the picture in
the docs shows the dashboard's queries on data the service really exported.
"""
from __future__ import annotations

import html
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
import yaml

HERE = Path(__file__).resolve().parent
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
CALM_SECONDS, SHIFTED_SECONDS, STEP = 75, 75, 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {seconds} s")


def traffic(base: str, seconds: float, shift: float) -> None:
    from sklearn.datasets import load_iris

    x = load_iris().data
    rng = np.random.default_rng(0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = x[rng.integers(0, len(x), 20)].copy()
        rows[:, 2] += shift
        requests.post(f"{base}/models/iris/predict", json={"instances": rows.tolist()}, timeout=5)
        requests.post(f"{base}/predict", json={"features": rows[0].tolist()}, timeout=5)
        time.sleep(0.05)


def panel_svg(panel: dict, prom: str, start: float, end: float) -> str:
    series = []
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", "10s").replace("$job", ".*").replace("$model", ".*")
        answer = requests.get(f"{prom}/api/v1/query_range", timeout=10,
                              params={"query": expr, "start": start, "end": end, "step": STEP}).json()
        for result in answer["data"]["result"]:
            legend = target.get("legendFormat", "")
            for key, value in result["metric"].items():
                legend = legend.replace("{{" + key + "}}", value)
            points = [(float(t), float(v)) for t, v in result["values"] if v not in ("NaN", "+Inf", "-Inf")]
            if points and any(v for _, v in points):  # a series at zero throughout only crowds the legend
                series.append((legend.strip() or expr, points))
    width, height, left, top = 560, 200, 50, 10
    values = [v for _, points in series for _, v in points] or [0.0, 1.0]
    low, high = min(0.0, min(values)), max(values) or 1.0
    parts = [f'<svg width="{width + 250}" height="{height + 40}" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="#fafafa" stroke="#ccc"/>']
    for tick in np.linspace(low, high, 5):
        y = top + height - (tick - low) / (high - low or 1) * height
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{tick:.3g}</text>'
                     f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
    for i, (legend, points) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{left + (t - start) / (end - start) * width:.1f},"
                        f"{top + height - (v - low) / (high - low or 1) * height:.1f}" for t, v in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        parts.append(f'<text x="{left + width + 10}" y="{top + 12 + 14 * i}" font-size="11" fill="{colour}">'
                     f'{html.escape(legend)} ({points[-1][1]:.3g})</text>')
    parts.append(f'<text x="{left}" y="{top + height + 16}" font-size="10">{int(end - start)} s of traffic; '
                 f'petal_length shifted after {CALM_SECONDS} s</text></svg>')
    return "".join(parts)


def main(out: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="iris-dashboard-"))
    env = {**os.environ, "IRIS_SERVICE_ENV": "production", "IRIS_SERVICE_INSTANCE_PATH": str(folder / "instance"),
           "IRIS_SERVICE_MODEL_PATH": str(folder / "model.joblib"), "IRIS_SERVICE_DRIFT_WINDOW": "500"}
    subprocess.run([sys.executable, "-m", "iris_service.cli", "train", "--out", str(folder / "model.joblib"),
                    "--version", "1"], env=env, check=True, stdout=subprocess.DEVNULL)
    port, prom_port = free_port(), free_port()
    config = yaml.safe_load((HERE / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(HERE / "alerts.yml")]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(folder / "processes.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "iris_service.cli", "serve", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    prom = subprocess.Popen(["prometheus", f"--config.file={folder / 'prometheus.yml'}",
                             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        base, prom_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{prom_port}"
        wait(base + "/health/ready")
        wait(prom_base + "/-/ready")
        start = time.time()
        traffic(base, CALM_SECONDS, 0.0)
        traffic(base, SHIFTED_SECONDS, 2.5)
        time.sleep(3)
        end = time.time()
        dashboard = json.loads((HERE / "grafana-dashboard.json").read_text())
        cells = "".join(f'<div class="panel"><h3>{html.escape(p["title"])}</h3>{panel_svg(p, prom_base, start, end)}'
                        f"</div>" for p in dashboard["panels"][:6])
        page = folder / "dashboard.html"
        page.write_text(f"""<!doctype html><meta charset="utf-8"><style>
            body {{ font-family: sans-serif; margin: 10px; background: #fff; }}
            .grid {{ display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }}
            .panel {{ border: 1px solid #ddd; padding: 4px 8px; }} h3 {{ margin: 2px 0; font-size: 14px; }}
            </style><h2>iris-service (deploy/monitoring/grafana-dashboard.json, from Prometheus)</h2>
            <div class="grid">{cells}</div>""")
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={out.resolve()}", "--window-size=1700,900", page.as_uri()],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    finally:
        for proc in (prom, server):
            proc.terminate()
            proc.wait(timeout=30)
        log.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "dashboard.png"))
