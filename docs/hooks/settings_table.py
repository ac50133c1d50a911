"""MkDocs hook: the configuration page's settings table, generated from the config classes.

Why generated: a hand-written table drifts the day someone adds a setting. This one is
rendered at build time from ``iris_service.settings`` (every upper-case attribute of the
three config classes, with each class's default), the checks in
``iris_service/settings/checks.py`` (types and ranges) and the one-line descriptions in
``iris_service/settings/descriptions.py``; ``tests/test_docs_settings.py`` checks it
lists every setting.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

#: Where the configuration page asks for the table.
PLACEHOLDER = "<!-- settings-table -->"
ENVIRONMENTS = ("development", "testing", "production")
#: For a setting no check describes: what its default's type says (nothing for a null default).
_BY_TYPE = {bool: "true or false", int: "whole number", float: "number", str: "string", list: "list",
            tuple: "list", dict: "mapping"}


def _package(name: str, root: Path) -> Any:
    """Import ``name`` from the checkout being documented, not from whatever is installed."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(name)


def _code(value: Any) -> str:
    """A default as the JSON an ``IRIS_SERVICE_*`` variable would hold."""
    return f"`{json.dumps(value)}`"


def allowed_values(name: str, default: Any, root: Path) -> str:
    """What a setting accepts, read from the start-up checks where they say it."""
    checks = _package("iris_service.settings.checks", root)
    settings = _package("iris_service.settings", root)
    if name in checks._NUMBERS:
        _kind, low, high = checks._NUMBERS[name]
        text = f"whole number, {low:,} to {high:,}"
        return text + " or null" if name in checks._NULLABLE else text
    if name in checks._BOOLEANS:
        return "true or false"
    if name == "TRUSTED_KEYS":
        return "list of public key files"
    if name == "TRACING_EXCLUDED_URLS":
        return "list of regular expressions"
    if name in checks._TEXT_LISTS:
        return "list of origins (or `*`)" if name == "CORS_ORIGINS" else "list of strings"
    if name in checks._PATHS:
        return "string"
    if name in checks._MAPPINGS:
        return "mapping of name to string"
    if name == "INPUT_RANGE_POLICY":
        return " or ".join(f"`{v}`" for v in checks.RANGE_POLICIES)
    if name == "LOG_FORMAT":
        return " or ".join(f"`{v}`" for v in checks.LOG_FORMATS)
    if name == "LOG_LEVEL":
        return "a level name (`DEBUG`, `INFO`, `WARNING`, `ERROR`) or number"
    if name == "INPUT_RANGE_MARGIN":
        return "number, 0 or more"
    if name == "GC_THRESHOLD":
        return "null, or one to three positive whole numbers"
    if name == "BATCHING":
        modes = _package("iris_service.runtime.batch_policy", root).BATCHING_MODES
        return " or ".join(f"`{m}`" for m in modes) + ", or a mapping"
    if name in settings.STRING_SETTINGS:
        return "string"
    if name == "ENV_NAME":
        return " or ".join(f"`{e}`" for e in ENVIRONMENTS)
    return _BY_TYPE.get(type(default), "")


def environment_form(name: str, root: Path) -> str:
    """How ``IRIS_SERVICE_<NAME>`` is read."""
    settings = _package("iris_service.settings", root)
    if name in settings.LIST_SETTINGS:
        return "comma-separated text"
    if name in settings.STRING_SETTINGS:
        return "text, as given"
    return "JSON (text if it does not parse)"


def settings_rows(root: Path) -> list[dict[str, str]]:
    """One row per setting the config classes define, in alphabetical order."""
    settings = _package("iris_service.settings", root)
    descriptions = _package("iris_service.settings.descriptions", root).DESCRIPTIONS
    defaults = {env: settings.vars_of(settings.CONFIGS[env]) for env in ENVIRONMENTS}
    names = sorted(set().union(*defaults.values()))
    rows = []
    for name in names:
        values = [defaults[env].get(name) for env in ENVIRONMENTS]
        rows.append({
            "name": name,
            **{env: _code(value) for env, value in zip(ENVIRONMENTS, values, strict=True)},
            "values": allowed_values(name, values[0], root),
            "environment": environment_form(name, root),
            "meaning": descriptions.get(name, ""),
        })
    return rows


def settings_table(root: Path) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| setting | development | testing | production | values | as a variable | meaning |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in settings_rows(root):
        cells = [f"`{row['name']}`", row["development"], row["testing"], row["production"],
                 row["values"], row["environment"], row["meaning"]]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the placeholder with the table (MkDocs calls this for every page)."""
    if PLACEHOLDER not in markdown:
        return markdown
    root = Path(config["config_file_path"]).resolve().parent
    return markdown.replace(PLACEHOLDER, settings_table(root))
