"""Every hint about a missing extra gives both install forms: the package is not on a public index."""
from __future__ import annotations

import re
from pathlib import Path

from iris_service.extras import EXTRAS, install_hint

PACKAGE = Path(__file__).resolve().parents[1] / "iris_service"
#: A hint written out by hand instead of built by ``install_hint`` (in a string, not a docstring).
_BY_HAND = re.compile(r"""["'][^"'\n]*pip install '?iris-service\[""")


def test_the_hint_gives_the_wheel_form_and_the_checkout_form():
    assert install_hint("files") == "pip install 'iris-service[files]' (from a checkout: pip install -e '.[files]')"


def test_every_extra_named_is_one_pyproject_defines():
    text = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    defined = set(re.findall(r"^(\w+) = \[", text.split("[project.optional-dependencies]")[1].split("\n[")[0],
                             re.MULTILINE))
    assert set(EXTRAS.values()) <= defined


def test_no_module_writes_an_install_hint_by_hand():
    by_hand = [f"{path.relative_to(PACKAGE)}:{n}" for path in PACKAGE.rglob("*.py") if path.name != "extras.py"
               for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if _BY_HAND.search(line)]
    assert by_hand == []


def test_the_runtime_hints_use_it():
    from iris_service.grpc import INSTALL_HINT as GRPC
    from iris_service.protocols.parquet import INSTALL_HINT as PARQUET

    assert (GRPC, PARQUET) == (install_hint("grpc"), install_hint("files"))
