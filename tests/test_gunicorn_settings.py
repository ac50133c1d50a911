"""Every ``GUNICORN_*`` variable ``gunicorn.conf.py`` reads is checked: a bad one is one line and exit 2 from gunicorn."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, free_port, server_env

from iris_service.servers.gunicorn_settings import VARIABLES, read

POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="gunicorn runs on POSIX hosts only")

#: Variable -> (a bad value, the one line gunicorn stops with).
BAD = {
    "GUNICORN_BIND": ("abc:xyz", "Error: GUNICORN_BIND must be HOST:PORT (e.g. 0.0.0.0:8080), [IPv6]:PORT or "
                                 "unix:PATH, not 'abc:xyz'."),
    "GUNICORN_WORKERS": ("abc", "Error: GUNICORN_WORKERS must be a whole number of worker processes from 1 to "
                                "1024, not 'abc'."),
    "GUNICORN_THREADS": ("0", "Error: GUNICORN_THREADS must be a whole number of threads per worker from 1 to "
                              "1024, not '0'."),
    "GUNICORN_TIMEOUT": ("30s", "Error: GUNICORN_TIMEOUT must be a whole number of seconds from 0 (never) to "
                                "86400, not '30s'."),
    "GUNICORN_GRACEFUL_TIMEOUT": ("-1", "Error: GUNICORN_GRACEFUL_TIMEOUT must be a whole number of seconds from 0 "
                                        "to 86400, not '-1'."),
    "GUNICORN_KEEPALIVE": ("2.5", "Error: GUNICORN_KEEPALIVE must be a whole number of seconds from 0 (no "
                                  "keep-alive) to 3600, not '2.5'."),
    "GUNICORN_REUSE_PORT": ("maybe", "Error: GUNICORN_REUSE_PORT must be 1 or 0 (true/false, yes/no, on/off), "
                                     "not 'maybe'."),
    "GUNICORN_LOG_LEVEL": ("loud", "Error: GUNICORN_LOG_LEVEL must be debug or info or warning or error or "
                                   "critical, not 'loud'."),
    "GUNICORN_REQUEST_TIMEOUT": ("soon", "Error: GUNICORN_REQUEST_TIMEOUT must be a positive number of seconds, "
                                         "not 'soon'."),
}


def test_every_variable_the_config_file_reads_is_checked_and_has_a_bad_case():
    named = set(re.findall(r"GUNICORN_[A-Z_]+", (ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")))
    checked = {variable.name for variable in VARIABLES}
    assert named <= checked, "a GUNICORN_* variable read without a check (add it to gunicorn_settings.VARIABLES)"
    assert set(BAD) == checked


def test_unset_or_blank_variables_are_the_shipped_defaults():
    expected = {"GUNICORN_BIND": "127.0.0.1:5000", "GUNICORN_WORKERS": 2, "GUNICORN_THREADS": 4,
                "GUNICORN_TIMEOUT": 30, "GUNICORN_GRACEFUL_TIMEOUT": 30, "GUNICORN_KEEPALIVE": 5,
                "GUNICORN_REUSE_PORT": True, "GUNICORN_LOG_LEVEL": "info", "GUNICORN_REQUEST_TIMEOUT": 30.0}
    assert read({}) == expected
    assert read({"GUNICORN_WORKERS": " "}) == expected


@pytest.mark.parametrize(("name", "text", "value"), [
    ("GUNICORN_BIND", "[::1]:5000", "[::1]:5000"),
    ("GUNICORN_BIND", "unix:/run/iris.sock", "unix:/run/iris.sock"),
    ("GUNICORN_REUSE_PORT", "off", False),
    ("GUNICORN_LOG_LEVEL", "WARNING", "warning"),
    ("GUNICORN_TIMEOUT", "0", 0),
    ("GUNICORN_REQUEST_TIMEOUT", "0.5", 0.5),
])
def test_good_values_are_read(name, text, value):
    assert read({name: text})[name] == value


@POSIX_ONLY
@pytest.mark.server
@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_variable_stops_gunicorn_with_one_line(iris_artifact, tmp_path, name):
    pytest.importorskip("gunicorn")
    value, line = BAD[name]
    variables = {"GUNICORN_BIND": f"127.0.0.1:{free_port()}", "GUNICORN_WORKERS": "1", name: value}
    env = {**os.environ, **server_env(iris_artifact, tmp_path, **variables)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    args = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--chdir", str(ROOT)]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line]
    assert result.stdout == ""
