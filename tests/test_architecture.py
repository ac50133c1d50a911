"""The layers are real: imports point one way, no cycle (function-level imports included), no Flask below rest/.

artifacts -> runtime -> serving -> protocols ... read as: each layer may import
only the layers listed before it (and the shared bottom modules), never one
after it. A newcomer can then trust the folder names.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "iris_service"
#: Each layer and what it may import, besides itself. The bottom modules come first.
LAYERS: dict[str, set[str]] = {
    "version": set(),
    "errors": set(),
    # The optional extras and how to install one: every missing-extra message says it the same way.
    "extras": set(),
    "settings": {"errors"},
    "artifacts": {"errors", "extras"},
    "runtime": {"errors", "extras", "artifacts"},
    "protocols": {"errors", "extras", "artifacts", "runtime"},
    "serving": {"errors", "extras", "settings", "artifacts", "runtime", "protocols"},
    "offline": {"errors", "extras", "artifacts", "runtime", "serving"},
    "training": {"errors", "extras", "settings", "artifacts", "runtime"},
    "rest": {"version", "errors", "extras", "settings", "artifacts", "runtime", "protocols", "serving", "training"},
    "servers": {"version", "errors"},
    # The Open Inference Protocol over gRPC: a front-end beside rest/, never on top of it.
    "grpc": {"version", "errors", "extras", "settings", "artifacts", "runtime", "protocols", "serving"},
    "cli": {"version", "errors", "extras", "settings", "artifacts", "runtime", "protocols", "serving", "offline",
            "training", "rest", "servers", "grpc"},
    # The package root and the old import path of the blueprints only re-export.
    "__init__": {"version", "rest"},
    "blueprints": {"rest"},
}
MAX_LINES = 300
#: Code protoc writes from a .proto: its length is the protocol's, not ours to split.
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    for path in sorted((ROOT / "training").rglob("*.py")):
        parts = ("iris_service", *path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every iris_service module ``name`` imports, at module or function level."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in modules and t != name)
    return out


def _layer(name: str) -> str:
    parts = name.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_imports_point_down_the_layers() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        layer = _layer(name)
        assert layer in LAYERS, f"{name}: a layer this test does not know; add it to LAYERS"
        for target in _imports(name, path, modules):
            other = _layer(target)
            if other != layer and other not in LAYERS[layer]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_no_module_is_longer_than_300_lines() -> None:
    long = {
        name: n
        for name, path in _modules().items()
        if not path.name.endswith(GENERATED_SUFFIXES) and (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_only_generated_protobuf_modules_skip_the_line_limit() -> None:
    """The exemption covers protoc's output, in the one folder it is generated into, and nothing else."""
    exempt = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if p.name.endswith(GENERATED_SUFFIXES))
    assert exempt == ["iris_service/grpc/proto/inference_pb2.py", "iris_service/grpc/proto/inference_pb2_grpc.py"]
    for name in exempt:
        head = "\n".join((ROOT / name).read_text(encoding="utf-8").splitlines()[:3])
        assert "# Generated by the" in head and "DO NOT EDIT" in head


def test_below_the_http_layer_nothing_loads_flask() -> None:
    """The data plane, protocols, file scoring and training import without any web framework."""
    code = (
        "import sys\n"
        "import iris_service, iris_service.serving, iris_service.protocols.v2, iris_service.protocols.mlflow\n"
        "import iris_service.offline.files, iris_service.training, iris_service.settings\n"
        "loaded = sorted(m for m in ('flask', 'flask_smorest', 'werkzeug', 'prometheus_client', 'marshmallow')"
        " if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == ""
