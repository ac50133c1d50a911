"""Deployment files: they parse, and their paths, ports and commands agree with each other."""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import create_app_for_test

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"

#: The documentation page that explains the image (its "Docker" section lists what the image runs).
DEPLOYMENT_PAGE = ROOT / "docs" / "deployment.md"
#: Image plumbing the documentation need not explain.
IMAGE_ONLY_PROGRAMS = frozenset({"useradd", "groupadd", "mkdir", "chown", "chmod", "apt-get", "rm"})
_MULTIPROC_MARKER = "IRIS_MULTIPROC_DIR_PREPARED_BY"


# --- Dockerfile parsing -----------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def _shell_words(args: str) -> list[str]:
    """An instruction's command as words: exec form (JSON) or shell form."""
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def dockerfile_commands(text: str) -> list[str]:
    """Each command the image runs (RUN, CMD, ENTRYPOINT), shell lists split at && and ;."""
    commands: list[str] = []
    for keyword, args in dockerfile_instructions(text):
        if keyword not in ("RUN", "CMD", "ENTRYPOINT"):
            continue
        if args.startswith("["):
            commands.append(" ".join(json.loads(args)))
        else:
            commands.extend(part.strip() for part in re.split(r"&&|;", args) if part.strip())
    return commands


def command_key(command: str) -> str:
    """The part the documentation shows: the command up to its first absolute (image-only) path."""
    words = []
    for word in shlex.split(command):
        if word.startswith("/"):
            break
        words.append(word)
    return " ".join(words)


def undocumented_commands(dockerfile_text: str, page_text: str) -> list[str]:
    """The Dockerfile's RUN/CMD commands whose key does not appear in the documentation's text."""
    page = " ".join(page_text.split())
    return [
        command
        for command in dockerfile_commands(dockerfile_text)
        if shlex.split(command)[0] not in IMAGE_ONLY_PROGRAMS and command_key(command) not in page
    ]


def dockerfile_env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions(text):
        if keyword == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(args))  # type: ignore[arg-type]
    return env


def healthcheck_command(text: str) -> list[str]:
    [args] = [args for keyword, args in dockerfile_instructions(text) if keyword == "HEALTHCHECK"]
    return _shell_words(args.split(" CMD ", 1)[1].strip())


@pytest.fixture(scope="module")
def routes(iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> frozenset[str]:
    """Every URL rule of the real app, as create_app builds it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IRIS_SERVICE_INSTANCE_PATH", str(tmp_path_factory.mktemp("deploy-instance")))
        app = create_app_for_test({"MODEL_PATH": str(iris_artifact)})
    return frozenset(rule.rule for rule in app.url_map.iter_rules())


@pytest.fixture(scope="module")
def operations_section() -> str:
    """The deployment page's Docker section: up to the next second-level heading."""
    text = DEPLOYMENT_PAGE.read_text(encoding="utf-8")
    assert "\n## Docker\n" in text
    return text.split("\n## Docker\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """Every document under deploy/kubernetes, by kind."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc, f"empty document in {path.name}"
            assert {"apiVersion", "kind", "metadata", "spec"} <= set(doc), path.name
            assert doc["kind"] not in docs, f"two {doc['kind']} documents"
            docs[doc["kind"]] = doc
    return docs


def container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [main] = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return main


def container_env(spec: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in spec.get("env", [])}


def port_number(spec: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, resolving a named port to the containerPort."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in spec["ports"] if p.get("name") == port]
    return number


# --- Kubernetes ---------------------------------------------------------------------------


def test_all_manifests_parse(manifests: dict[str, dict[str, Any]]) -> None:
    assert set(manifests) == {"Deployment", "Service", "HorizontalPodAutoscaler", "InferenceService"}
    assert manifests["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"
    assert manifests["InferenceService"]["apiVersion"] == "serving.kserve.io/v1beta1"


def test_probes_hit_the_apps_routes_on_the_container_port(
    manifests: dict[str, dict[str, Any]], routes: frozenset[str]
) -> None:
    main = container(manifests)
    [http] = [p for p in main["ports"] if p["name"] == "http"]
    assert http["containerPort"] == 8080
    probes = {name: main[name]["httpGet"] for name in ("startupProbe", "livenessProbe")}
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/health/live"
    for probe in probes.values():
        assert probe["path"] in routes
        assert port_number(main, probe["port"]) == http["containerPort"]


def test_deployment_runs_production_with_resources(manifests: dict[str, dict[str, Any]]) -> None:
    main = container(manifests)
    env = container_env(main)
    assert env["IRIS_SERVICE_ENV"] == "production"
    assert env["IRIS_SERVICE_MODEL_PATH"].endswith(".joblib")
    assert env["GUNICORN_BIND"].rsplit(":", 1)[1] == str(main["ports"][0]["containerPort"])
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(main["resources"][kind])
    # A read-only root filesystem needs a writable volume for the metrics files.
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = [PurePosixPath(m["mountPath"]) for m in main["volumeMounts"]]
    multiproc = PurePosixPath(env["PROMETHEUS_MULTIPROC_DIR"])
    assert any(multiproc == m or m in multiproc.parents for m in mounts)


def test_service_and_hpa_point_at_the_deployment(manifests: dict[str, dict[str, Any]]) -> None:
    deployment, service, hpa = (manifests[k] for k in ("Deployment", "Service", "HorizontalPodAutoscaler"))
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    assert set(ports) == {"http", "grpc"}
    assert port_number(container(manifests), ports["http"]["targetPort"]) == 8080
    assert port_number(container(manifests), ports["grpc"]["targetPort"]) == grpc_port(container(manifests))
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_inference_service_is_a_v2_custom_predictor(
    manifests: dict[str, dict[str, Any]], routes: frozenset[str]
) -> None:
    isvc = manifests["InferenceService"]
    [predictor] = isvc["spec"]["predictor"]["containers"]
    assert predictor["name"] == "kserve-container"
    assert predictor["image"] == container(manifests)["image"]
    env = container_env(predictor)
    assert env["PROTOCOL"] == "v2"
    assert env["IRIS_SERVICE_MODEL_PATH"] == container_env(container(manifests))["IRIS_SERVICE_MODEL_PATH"]
    [port] = predictor["ports"]
    assert port["containerPort"] == 8080
    assert env["GUNICORN_BIND"].endswith(":8080")
    assert predictor["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # What KServe's V2 data plane calls exists in the app.
    assert {"/v2/health/live", "/v2/health/ready", "/v2/models/<name>/infer"} <= routes


def grpc_port(spec: dict[str, Any]) -> int:
    """The container's gRPC port: the one named ``grpc`` (``h2c`` under KServe)."""
    [number] = [p["containerPort"] for p in spec["ports"] if p.get("name") in ("grpc", "h2c")]
    return int(number)


def grpc_enabled_on(spec: dict[str, Any]) -> int | None:
    """The port the container's command or environment turns gRPC on for (None: off)."""
    words = [str(w) for w in spec.get("command", []) + spec.get("args", [])]
    if "--grpc-port" in words:
        return int(words[words.index("--grpc-port") + 1])
    value = container_env(spec).get("IRIS_SERVICE_GRPC_PORT")
    return int(value) if value else None


def test_deployment_serves_grpc_on_its_grpc_port_with_a_grpc_readiness_probe(
    manifests: dict[str, dict[str, Any]],
) -> None:
    main = container(manifests)
    port = grpc_port(main)
    assert port == 8081 and grpc_enabled_on(main) == port
    # Kubernetes' grpc probe calls grpc.health.v1 Check with service "" (our overall status); the port is a number.
    assert main["readinessProbe"] == {"grpc": {"port": port}, "periodSeconds": 5, "timeoutSeconds": 3,
                                      "failureThreshold": 2}


@pytest.fixture(scope="module")
def grpc_inference_service() -> dict[str, Any]:
    [doc] = yaml.safe_load_all((ROOT / "deploy" / "kserve" / "inferenceservice-grpc.yaml").read_text(encoding="utf-8"))
    return doc


def test_the_grpc_inference_service_routes_the_h2c_port_that_serves_grpc(
    grpc_inference_service: dict[str, Any], manifests: dict[str, dict[str, Any]]
) -> None:
    isvc = grpc_inference_service
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert isvc["metadata"]["name"] != manifests["InferenceService"]["metadata"]["name"]
    [predictor] = isvc["spec"]["predictor"]["containers"]
    assert predictor["name"] == "kserve-container" and predictor["image"] == container(manifests)["image"]
    # Knative routes one port; named h2c it carries HTTP/2 cleartext, that is gRPC.
    [port] = predictor["ports"]
    assert (port["name"], port["containerPort"]) == ("h2c", 8081)
    assert grpc_enabled_on(predictor) == port["containerPort"]
    env = container_env(predictor)
    assert env["PROTOCOL"] == "grpc-v2"
    rest = container_env(manifests["InferenceService"]["spec"]["predictor"]["containers"][0])
    assert {k: v for k, v in env.items() if k not in ("PROTOCOL", "IRIS_SERVICE_GRPC_PORT")} == {
        k: v for k, v in rest.items() if k != "PROTOCOL"}


def test_dockerfile_installs_the_grpc_extra(dockerfile: str) -> None:
    installs = [c for c in dockerfile_commands(dockerfile) if c.startswith("pip install") and "." in shlex.split(c)[2:][0]]
    assert [shlex.split(c)[2] for c in installs] == [".[grpc]"]


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_port_and_healthcheck_agree_with_the_deployment(
    dockerfile: str, manifests: dict[str, dict[str, Any]], routes: frozenset[str]
) -> None:
    instructions = dict(dockerfile_instructions(dockerfile))
    assert instructions["FROM"] == "python:3.11-slim"
    env = dockerfile_env(dockerfile)
    exposed, exposed_grpc = (int(port) for port in instructions["EXPOSE"].split())
    assert env["GUNICORN_BIND"] == f"0.0.0.0:{exposed}"
    assert exposed == container(manifests)["ports"][0]["containerPort"]
    assert exposed_grpc == grpc_port(container(manifests))

    check = healthcheck_command(dockerfile)
    assert check[:2] == ["python", "-c"] and "urllib.request" in check[2]
    [url] = re.findall(r"https?://[^'\"]+", check[2])
    parts = urlsplit(url)
    assert parts.port == exposed
    assert parts.path == container(manifests)["livenessProbe"]["httpGet"]["path"]
    assert parts.path in routes


def test_dockerfile_trains_the_model_it_serves(dockerfile: str, manifests: dict[str, dict[str, Any]]) -> None:
    env = dockerfile_env(dockerfile)
    workdir = PurePosixPath("/")
    trained = None
    for keyword, args in dockerfile_instructions(dockerfile):
        if keyword == "WORKDIR":
            workdir = workdir / args
        elif keyword == "RUN" and args.startswith("iris-service train"):
            trained = workdir / shlex.split(args)[shlex.split(args).index("--out") + 1]
    assert str(trained) == env["IRIS_SERVICE_MODEL_PATH"]
    assert env["IRIS_SERVICE_MODEL_PATH"] == container_env(container(manifests))["IRIS_SERVICE_MODEL_PATH"]
    assert env["IRIS_SERVICE_ENV"] == "production"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == container_env(container(manifests))["PROMETHEUS_MULTIPROC_DIR"]


def test_dockerfile_runs_gunicorn_as_the_deployments_non_root_user(
    dockerfile: str, manifests: dict[str, dict[str, Any]]
) -> None:
    instructions = dict(dockerfile_instructions(dockerfile))
    assert _shell_words(instructions["CMD"]) == ["gunicorn", "-c", "gunicorn.conf.py"]
    assert instructions["USER"] not in ("root", "0")
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    assert int(instructions["USER"]) == pod["securityContext"]["runAsUser"]


def test_dockerfile_commands_are_documented(dockerfile: str, operations_section: str) -> None:
    assert dockerfile_commands(dockerfile)
    assert undocumented_commands(dockerfile, operations_section) == []


def test_an_undocumented_command_is_reported(dockerfile: str, operations_section: str) -> None:
    train = "iris-service train --out models/iris/model.joblib"
    assert undocumented_commands(dockerfile, operations_section.replace(train, "")) == [train]
    assert undocumented_commands(dockerfile + "\nRUN make --always-make\n", operations_section) == [
        "make --always-make"
    ]


def test_dockerignore_keeps_secrets_and_the_venv_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for pattern in (".git", ".venv", "instance/config.py", "tests"):
        assert pattern in ignored
    for needed in ("README.md", "pyproject.toml", "iris_service", "training", "wsgi.py", "gunicorn.conf.py"):
        assert needed not in ignored


# --- gunicorn.conf.py ---------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("GUNICORN_") or name == "PROMETHEUS_MULTIPROC_DIR":
            monkeypatch.delenv(name)
    # Set, so that monkeypatch restores (removes) it after the config file sets it.
    monkeypatch.setenv(_MULTIPROC_MARKER, "")
    return monkeypatch


def load_gunicorn_conf() -> dict[str, Any]:
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_conf_defaults(clean_env: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf()
    assert conf["preload_app"] is True
    assert conf["bind"] == "127.0.0.1:5000"
    assert (conf["workers"], conf["worker_class"], conf["threads"]) == (2, "iris_service.servers.gunicorn_worker.ThreadWorker", 4)
    assert conf["wsgi_app"] == "wsgi:app"
    assert conf["timeout"] > 0 and conf["keepalive"] > 0
    assert conf["control_socket_disable"] is True
    assert conf["reuse_port"] is True  # one socket per worker: the kernel spreads connections
    assert callable(conf["child_exit"]) and callable(conf["on_starting"])


def test_gunicorn_conf_reads_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("GUNICORN_BIND", "0.0.0.0:8080")
    clean_env.setenv("GUNICORN_WORKERS", "3")
    clean_env.setenv("GUNICORN_THREADS", "8")
    conf = load_gunicorn_conf()
    assert (conf["bind"], conf["workers"], conf["threads"]) == ("0.0.0.0:8080", 3, 8)


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("off", False), ("False", False), ("1", True)])
def test_gunicorn_conf_reuse_port_can_be_turned_off(clean_env: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    clean_env.setenv("GUNICORN_REUSE_PORT", value)
    assert load_gunicorn_conf()["reuse_port"] is expected


def test_gunicorn_drains_within_the_pods_grace_period(
    clean_env: pytest.MonkeyPatch, manifests: dict[str, dict[str, Any]]
) -> None:
    conf = load_gunicorn_conf()
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    pre_stop = container(manifests)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) + conf["graceful_timeout"] < pod["terminationGracePeriodSeconds"]


def test_gunicorn_conf_prepares_the_multiprocess_dir_once(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    (multiproc / "counter_123.db").write_bytes(b"stale")
    clean_env.setenv("PROMETHEUS_MULTIPROC_DIR", str(multiproc))
    load_gunicorn_conf()
    assert list(multiproc.iterdir()) == []
    # A HUP re-reads the file in the same master: live workers' files must stay.
    (multiproc / "counter_456.db").write_bytes(b"live")
    load_gunicorn_conf()
    assert [p.name for p in multiproc.iterdir()] == ["counter_456.db"]


def test_gunicorn_conf_creates_a_missing_multiprocess_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "a" / "b"))
    load_gunicorn_conf()
    assert (tmp_path / "a" / "b").is_dir()


def test_child_exit_drops_only_the_dead_workers_live_gauges(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    conf = load_gunicorn_conf()
    for name in ("gauge_livesum_4242.db", "counter_4242.db", "gauge_livesum_4343.db"):
        (tmp_path / name).write_bytes(b"")
    conf["child_exit"](None, SimpleNamespace(pid=4242))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db", "gauge_livesum_4343.db"]


@pytest.mark.skipif(sys.platform == "win32", reason="gunicorn does not run on Windows")
def test_gunicorn_check_config_loads_it(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    (tmp_path / "trivial.py").write_text("def app(environ, start_response):\n    return []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "-c", str(ROOT / "gunicorn.conf.py"),
         "--chdir", str(tmp_path), "trivial:app"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


# --- CI workflow --------------------------------------------------------------------------


def test_ci_covers_three_oses_and_four_pythons() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    test = workflow["jobs"]["test"]
    matrix = test["strategy"]["matrix"]
    assert {os_name.split("-")[0] for os_name in matrix["os"]} == {"ubuntu", "windows", "macos"}
    # Quoted in the file: an unquoted 3.10 would be the float 3.1.
    assert matrix["python-version"] == ["3.10", "3.11", "3.12", "3.13"]
    runs = " ".join(step.get("run", "") for step in test["steps"])
    assert 'pip install -e ".[dev]"' in runs and "pytest" in runs
    build_runs = " ".join(step.get("run", "") for step in workflow["jobs"]["build"]["steps"])
    assert "python -m build" in build_runs
