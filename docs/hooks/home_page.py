"""MkDocs hook: the site's home page is the repository's README, so the two cannot disagree.

Why: the README is the front door on GitHub and the home page is the front door of the site; one
text serves both. Its links point into ``docs/`` (``docs/serving.md``) so they work on GitHub; here
they are made relative to the site (``serving.md``), and a link to a file outside ``docs/``
(``SECURITY.md``) becomes its name in code, since the site does not hold that file.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: What marks ``docs/index.md`` as the page the README replaces.
PLACEHOLDER = "<!-- readme -->"
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def _relink(match: re.Match[str]) -> str:
    bang, text, target = match.groups()
    if re.match(r"[a-z]+://", target) or target.startswith("#"):
        return match.group(0)
    if target.startswith("docs/"):
        return f"{bang}[{text}]({target[len('docs/'):]})"
    return text if text.startswith("`") else f"`{text}`"


def readme_for_site(readme: str) -> str:
    """The README with its links made relative to the site."""
    return _LINK.sub(_relink, readme)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """The home page becomes the README (the rest of ``docs/index.md`` is for readers on GitHub)."""
    if PLACEHOLDER not in markdown:
        return markdown
    root = Path(config["config_file_path"]).resolve().parent
    return readme_for_site((root / "README.md").read_text(encoding="utf-8"))
