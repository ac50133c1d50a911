"""The payload log's settings (``PAYLOAD_LOG*``), checked once at start: a bad one stops start-up naming it.

Kept beside ``checks.py`` rather than in it: the payload log is one feature
with five settings, and its checks read best together.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError

#: What turns the payload log off (the default), compared lower-cased.
OFF_VALUES = frozenset({"", "off"})
MIB = 1024 * 1024
#: Setting -> (kind, low, high, what it means): whole numbers, each in its range.
_WHOLE: dict[str, tuple[int, int, str]] = {
    "PAYLOAD_LOG_MAX_BYTES": (1024, 2**40, "bytes before the file is rotated"),
    "PAYLOAD_LOG_BACKUPS": (0, 1000, "rotated files kept"),
    "PAYLOAD_LOG_QUEUE": (1, 10**7, "records waiting for the writer"),
}


def check_payload_log(config: dict[str, Any]) -> None:
    """``PAYLOAD_LOG`` off, a writable file path or an http(s) URL; its numbers in range. Normalises off to None."""
    target = config.get("PAYLOAD_LOG")
    if target is None or target is False or (isinstance(target, str) and target.strip().lower() in OFF_VALUES):
        config["PAYLOAD_LOG"] = None
    else:
        config["PAYLOAD_LOG"] = _check_target(target)
    sample = config.get("PAYLOAD_LOG_SAMPLE", 1.0)
    if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 < sample <= 1:
        raise ConfigError(f"PAYLOAD_LOG_SAMPLE must be a number above 0 and at most 1 (the share of "
                          f"requests logged), not {sample!r}.")
    config["PAYLOAD_LOG_SAMPLE"] = float(sample)
    for key, (low, high, meaning) in _WHOLE.items():
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{key} must be a whole number from {low} to {high} ({meaning}), not {value!r}.")


def _check_target(target: Any) -> str:
    """A path whose folder exists and is writable, or an ``http://``/``https://`` URL with a host."""
    allowed = "off, a file path in an existing writable folder, or an http:// or https:// URL"
    if not isinstance(target, str | os.PathLike):
        raise ConfigError(f"PAYLOAD_LOG must be {allowed}, not {target!r}.")
    text = str(target).strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"PAYLOAD_LOG must be {allowed}, not {text!r}.")
        if parts.username is not None or parts.password is not None:
            # Never echoed: the URL holds a password. http.client would not send it either.
            raise ConfigError(f"PAYLOAD_LOG must be {allowed} without a user name or password "
                              f"(they would not be sent), not a URL to {parts.hostname} with one.")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise ConfigError(f"PAYLOAD_LOG must be {allowed}, not {text!r} (its port is not valid).") from None
        return text
    path = Path(text).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"PAYLOAD_LOG must be {allowed}, not {text!r} (a folder).")
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"PAYLOAD_LOG must be {allowed}, not {text!r} (its folder does not exist or "
                          "is not writable).")
    # Absolute now: a server that changes its working folder later still writes here.
    return str(path.absolute())
