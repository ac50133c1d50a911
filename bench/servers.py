"""Server specs and the life of one benchmarked server process.

Every server runs in its own process group on a free 127.0.0.1 port, so the
bench can measure the whole tree (forked workers too) and stop exactly
what it started, nothing else.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Scenario:
    """One load: which request body, how many rows it carries, how many connections, where.

    ``protocol`` is ``http`` (wrk or bench/loadgen.py, POST ``path``) or
    ``grpc`` (bench/grpcload.py, V2 ``ModelInfer`` on the server's gRPC port).
    """

    name: str
    body: str
    rows: int
    connections: int
    path: str = "/predict"
    protocol: str = "http"

    @property
    def is_batch(self) -> bool:
        """A load of many rows per request, as opposed to the single-row loads every server runs."""
        return self.rows > 1


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server and what to measure on it.

    ``command`` items and ``env`` values are ``str.format`` templates over the
    bench context (``python``, ``port``, ``threads``, model paths).
    """

    name: str
    command: tuple[str, ...]
    scenarios: tuple[Scenario, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str = "/health"
    needs_ours: bool = False
    note: str = ""
    #: Context keys the spec needs (e.g. ``mlserver``); without one the spec is skipped.
    needs: tuple[str, ...] = ()
    #: A GET path whose status is recorded after the loads (``probe_status``): it tells
    #: whether the server applied the settings the spec passes (404: ignored them).
    probe_path: str | None = None
    #: Working directory template (MLServer writes its .metrics and .envs folders there);
    #: the repository root when empty.
    cwd: str = ""
    #: Another spec's name: both servers run at once and their loads alternate (bench/run.py's
    #: ``_run_pair``), so a ratio of the two (P1) does not see the machine drift between them.
    paired_with: str = ""


@dataclass(frozen=True)
class Started:
    """A server that answered its ready URL."""

    pid: int
    port: int
    startup_s: float
    grpc_port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"


class ServerFailed(RuntimeError):
    """The server exited or never became ready."""


def free_port() -> int:
    """Ask the kernel for a free 127.0.0.1 port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def get_status(port: int, path: str) -> int | None:
    """The status of ``GET path`` on 127.0.0.1:``port``; None when nothing answers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2.0)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


@contextmanager
def running(
    spec: ServerSpec,
    context: Mapping[str, object],
    *,
    cwd: Path,
    base_env: Mapping[str, str],
    log_path: Path,
) -> Iterator[Started]:
    """Start ``spec``, wait for its ready URL to answer 200, stop it on exit."""
    # Every server gets a free port for HTTP and, whether it uses them or not, for gRPC
    # and metrics (MLServer opens all three).
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    values = {**context, "port": port, "grpc_port": grpc_port, "metrics_port": metrics_port}
    command = [part.format(**values) for part in spec.command]
    env = {**base_env, **{k: v.format(**values) for k, v in spec.env.items()}}
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        started_at = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=spec.cwd.format(**values) if spec.cwd else cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = started_at + READY_TIMEOUT_S
        while True:
            if _has_exited(proc.pid):
                raise ServerFailed(f"{spec.name} exited before it was ready (see {log_path})")
            if get_status(port, spec.ready_path) == 200:
                break
            if time.perf_counter() > deadline:
                raise ServerFailed(f"{spec.name} not ready after {READY_TIMEOUT_S:.0f} s (see {log_path})")
            time.sleep(0.01)
        yield Started(pid=proc.pid, port=port, startup_s=time.perf_counter() - started_at, grpc_port=grpc_port)
    finally:
        _stop(proc)


def _has_exited(pid: int) -> bool:
    """True once ``pid`` has exited, without reaping it.

    An unreaped leader keeps its pid, hence its process group id, from being
    reused, so a later ``killpg`` can only reach processes this bench started.
    """
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group this bench created for ``proc``, then reap it."""
    if proc.returncode is not None:
        return
    if not _has_exited(proc.pid):
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not _has_exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    # Also catches stragglers such as a gunicorn worker outliving its master.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(STOP_TIMEOUT_S)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc), so forked workers count too."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    pids = []
    todo = [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(children.get(current, []))
    return pids


def tree_memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` and all its descendants, in MiB (Linux /proc).

    RSS is what the targets compare; PSS is also kept because forked workers
    (gunicorn, granian, uvicorn --workers) share pages that a sum of RSS counts twice.
    """
    rss_kib = pss_kib = 0
    for current in tree_pids(pid):
        rss_kib += _proc_field(Path(f"/proc/{current}/status"), "VmRSS:")
        pss_kib += _proc_field(Path(f"/proc/{current}/smaps_rollup"), "Pss:")
    return rss_kib / 1024.0, pss_kib / 1024.0


def stat_cpu_ticks(stat: str) -> int:
    """utime + stime (fields 14 and 15) of one /proc/<pid>/stat line, in clock ticks.

    Fields are counted after the last ``)``: the command name may hold spaces
    and parentheses, so splitting the whole line would shift them.
    """
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state)
    return int(fields[14 - 3]) + int(fields[15 - 3])


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and all its descendants.

    Read before and after a load, the difference is what the server spent on
    it, whichever of its threads or worker processes did the work.
    """
    ticks = 0
    for current in tree_pids(pid):
        try:
            ticks += stat_cpu_ticks(Path(f"/proc/{current}/stat").read_text())
        except OSError:  # exited between the walk and the read
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def _proc_field(path: Path, key: str) -> int:
    """The kB value of line ``key`` in a /proc file, 0 if it is gone."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
