"""gunicorn's "Listening at:" line with the address in it when every worker binds its own socket.

Why: ``gunicorn.conf.py`` sets ``reuse_port``, and gunicorn then binds one
SO_REUSEPORT socket in each worker and none in the master, whose start-up line
lists the master's sockets: ``Listening at:  (1234)``, with a blank where the
address belongs. The line is what operators grep for, so it is filled in from
the configured addresses, and says why the workers hold the sockets.
"""
from __future__ import annotations

import logging
from typing import Any

#: gunicorn's own format for the line (gunicorn/arbiter.py, Arbiter.start).
LISTENING = "Listening at: %s (%s)"


def addresses(cfg: Any) -> str:
    """The configured binds as gunicorn writes bound ones: ``http://host:port``, ``http://[::1]:port``, ``unix:path``."""
    scheme = "https" if getattr(cfg, "is_ssl", False) else "http"
    shown = []
    for address in cfg.address:
        if isinstance(address, tuple):
            host, port = str(address[0]), int(address[1])
            shown.append(f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}")
        else:
            shown.append(f"unix:{address}")
    return ",".join(shown)


class ListeningAddress(logging.Filter):
    """Fills the blank address of gunicorn's "Listening at:" record; every other record passes unchanged."""

    def __init__(self, listening: str) -> None:
        super().__init__()
        self.listening = listening

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg == LISTENING and isinstance(args, tuple) and len(args) == 2 and not args[0]:
            record.args = (f"{self.listening} (each worker binds it, SO_REUSEPORT)", args[1])
        return True


def name_listeners(server: Any) -> None:
    """From ``on_starting``: fill in the master's start-up line when its workers bind the sockets."""
    if server.cfg.reuse_port:
        server.log.error_log.addFilter(ListeningAddress(addresses(server.cfg)))
