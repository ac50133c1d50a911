"""The package as users get it: a wheel installed into a fresh virtual environment."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv

import pytest
from conftest import ROOT

SCRIPT = """
import json, sys
from pathlib import Path
import iris_service
from iris_service import training
assert "site-packages" in iris_service.__file__, iris_service.__file__
assert "site-packages" in training.__file__, training.__file__
out = Path(sys.argv[1])
training.train(out, version="w1")
from iris_service import create_app
app = create_app({"ENV_NAME": "production", "MODEL_PATH": str(out)})
client = app.test_client()
answer = client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).get_json()
health = client.get("/health").get_json()
docs = client.get("/docs/assets/swagger-ui-bundle.js")
print(json.dumps({"answer": answer, "health": health, "docs": docs.status_code}))
docs.close()
"""


@pytest.mark.slow
def test_wheel_installs_and_predicts(tmp_path):
    source = tmp_path / "source"  # build from a copy: no build/ or egg-info left in the checkout
    for name in ("iris_service", "training"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check",
                    "-w", str(dist), str(source)], check=True, timeout=300, cwd=tmp_path)
    wheel = next(dist.glob("iris_service-*.whl"))
    # One top-level name: the training code installs as iris_service.training, never as a generic
    # "training" that could shadow a user's own module; every layer's package is in the wheel.
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"iris_service"}
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    # Every package of the checkout is in the wheel (pyproject.toml lists them one by one).
    layers = {str(init.parent.relative_to(ROOT)) for init in (ROOT / "iris_service").rglob("__init__.py")}
    assert layers | {"iris_service/training"} <= packages
    assert "iris_service/rest/templates/index.html" in names and "iris_service/rest/static/ui.js" in names
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
                   check=True, timeout=600)
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([str(python), "-c", SCRIPT, str(work / "model.joblib")], capture_output=True,
                            text=True, timeout=300, cwd=work)
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["answer"]["prediction"] == 0
    assert report["answer"]["label"] == "setosa"
    assert report["health"]["status"] == "API is running!"
    assert report["docs"] == 200
    cli = env_dir / ("Scripts/iris-service.exe" if os.name == "nt" else "bin/iris-service")
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "0.1.0" in version.stdout
