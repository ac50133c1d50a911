"""The generated pieces of the documentation: the settings table, the home page, and the README's promises."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from iris_service.settings import CONFIGS, vars_of
from iris_service.settings.descriptions import DESCRIPTIONS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def hook(name: str) -> ModuleType:
    """A module of ``docs/hooks`` (not a package: MkDocs loads them by path)."""
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", ROOT / "docs" / "hooks" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table() -> str:
    return hook("settings_table").settings_table(ROOT)


def every_setting() -> set[str]:
    return set().union(*(vars_of(cls) for cls in CONFIGS.values()))


def test_every_setting_has_a_one_line_description() -> None:
    assert every_setting() - set(DESCRIPTIONS) == set(), "add a line to iris_service/settings/descriptions.py"
    assert set(DESCRIPTIONS) - every_setting() == set(), "a description for a setting no class defines"
    assert all(text.strip() and "\n" not in text for text in DESCRIPTIONS.values())


def test_the_table_lists_every_setting_with_each_class_default(table: str) -> None:
    rows = {line.split(" | ")[0].strip("| `"): line for line in table.splitlines()[2:]}
    assert set(rows) == every_setting()
    cells = {name: [c.strip() for c in line.strip("|").split(" | ")] for name, line in rows.items()}
    assert cells["UI_ENABLED"][1:4] == ["`true`", "`true`", "`false`"]
    assert cells["LOG_FORMAT"][1:4] == ['`"text"`', '`"json"`', '`"json"`']
    assert cells["MAX_BATCH_SIZE"][1:5] == ["`10000`"] * 3 + ["whole number, 1 to 1,000,000,000"]
    assert cells["MAX_CONTENT_LENGTH"][4] == "whole number, 1 to 1,099,511,627,776 or null"
    assert cells["INPUT_RANGE_POLICY"][4] == "`allow` or `reject`"
    assert cells["BATCHING"][4] == "`off` or `on` or `auto`, or a mapping"
    assert cells["API_KEYS"][5] == "comma-separated text" and cells["ADMIN_TOKEN"][5] == "text, as given"
    assert cells["GC_THRESHOLD"][1] == "`[50000, 20, 20]`"
    assert cells["MODEL_PATH"][6] == DESCRIPTIONS["MODEL_PATH"]


def test_the_configuration_page_asks_for_the_table() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert hook("settings_table").PLACEHOLDER in page


def test_the_home_page_is_the_readme_with_site_links() -> None:
    relink = hook("home_page").readme_for_site
    assert relink("See [Serving](docs/serving.md#stopping).") == "See [Serving](serving.md#stopping)."
    assert relink("![shot](docs/screenshot.png)") == "![shot](screenshot.png)"
    assert relink("listed in [SECURITY.md](SECURITY.md).") == "listed in `SECURITY.md`."
    assert relink("[site](https://example.org/x) and [top](#top)") == "[site](https://example.org/x) and [top](#top)"


def test_the_readme_is_the_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    first_block = re.search(r"```\w*\n(.*?)```", text, re.DOTALL).group(1)  # type: ignore[union-attr]
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == ["make run", "make test"]
    assert text.split("```")[0].strip() == "# iris-service"  # nothing before the two commands but the title
    assert ("curl -X POST http://127.0.0.1:5000/predict -H \"Content-Type: application/json\" "
            "-d '{\"features\": [5.1, 3.5, 1.4, 0.2]}'") in text
    assert '"prediction":0' in text and '"status":"API is running!"' in text
    assert ". .venv/bin/activate" in text and "pip install -e '.[files]'" in text


def test_every_page_is_in_the_nav_and_every_readme_link_exists() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.SafeLoader)

    def pages(nav: list) -> list[str]:
        out = []
        for entry in nav:
            for value in entry.values():
                out += pages(value) if isinstance(value, list) else [value]
        return out

    listed = pages(config["nav"])
    assert sorted(listed) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    links = re.findall(r"\]\((docs/[^)#\s]+)", README.read_text(encoding="utf-8"))
    assert links and all((ROOT / link).is_file() for link in links), links
    assert {f"docs/{page}" for page in listed if page != "index.md"} <= set(links)
