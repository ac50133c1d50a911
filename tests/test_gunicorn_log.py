"""gunicorn's start-up line names the address it listens at, with SO_REUSEPORT (our default) and without."""
from __future__ import annotations

import os
import re
import sys
from types import SimpleNamespace

import pytest
from conftest import ROOT, free_port, run_server, server_env

from iris_service.servers.gunicorn_log import addresses

POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="gunicorn runs on POSIX hosts only")


@POSIX_ONLY
@pytest.mark.server
@pytest.mark.parametrize(("reuse_port", "suffix"), [("1", " (each worker binds it, SO_REUSEPORT)"), ("0", "")],
                         ids=["reuse-port", "shared-socket"])
def test_gunicorn_logs_the_address_it_listens_at(iris_artifact, tmp_path, reuse_port, suffix):
    pytest.importorskip("gunicorn")
    port, output = free_port(), tmp_path / "gunicorn.log"
    env = server_env(iris_artifact, tmp_path, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1",
                     GUNICORN_REUSE_PORT=reuse_port)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    args = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--chdir", str(ROOT)]
    with run_server(args, env, port, output=output) as (_base, proc):
        pid = proc.pid
    lines = [line for line in output.read_text().splitlines() if "Listening at:" in line]
    assert len(lines) == 1, lines
    assert re.search(r"\[INFO\] Listening at: (.*)$", lines[0]).group(1) == (
        f"http://127.0.0.1:{port}{suffix} ({pid})"
    )


def test_addresses_are_written_as_gunicorn_writes_bound_sockets():
    cfg = SimpleNamespace(address=[("0.0.0.0", 8080), ("::1", 5000), "/run/iris.sock"], is_ssl=False)
    assert addresses(cfg) == "http://0.0.0.0:8080,http://[::1]:5000,unix:/run/iris.sock"
    assert addresses(SimpleNamespace(address=[("127.0.0.1", 443)], is_ssl=True)) == "https://127.0.0.1:443"
