"""``iris-service serve``: waitress with a graceful SIGTERM, on any OS."""
from __future__ import annotations

from typing import Any

import click

from ..settings import ENV_VAR


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 1024), help="Worker threads.")
@click.option("--env", "env", type=click.Choice(["development", "testing", "production"]), default=None,
              help=f"Config environment (default: ${ENV_VAR} or development).")
@click.option("--channel-timeout", default=120, show_default=True, type=click.IntRange(1),
              help="Seconds of client silence before a connection is closed (slow clients).")
@click.option("--request-timeout", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds a client has to send a whole request, headers and body; later ones get a 408.")
@click.option("--connection-limit", default=100, show_default=True, type=click.IntRange(1),
              help="Open connections accepted at once; more wait in the listen backlog. At the limit, "
                   "idle connections and requests still arriving after 2 s are closed to make room.")
@click.option("--url-prefix", default="", metavar="PATH",
              help="Mount the app under PATH (e.g. /api) behind a proxy that forwards the prefix.")
@click.option("--trusted-proxy", default=None, metavar="ADDRESS",
              help="Address of the reverse proxy whose forwarding headers are believed ('*' for any).")
@click.option("--trusted-proxy-headers", default="", metavar="NAMES",
              help="Headers believed from --trusted-proxy, e.g. 'x-forwarded-for x-forwarded-proto' "
                   "or 'forwarded'.")
@click.option("--drain-timeout", default=25.0, show_default=True, type=click.FloatRange(0),
              help="Seconds SIGTERM waits for requests in flight before closing their connections.")
@click.option("--grpc-port", default=None, type=click.IntRange(0, 65535), metavar="PORT",
              help="Also serve the Open Inference Protocol over gRPC on PORT, same --host and models "
                   "(pip install 'iris-service[grpc]').")
def serve(host: str, port: int, threads: int, env: str | None, channel_timeout: int, request_timeout: float,
          connection_limit: int, url_prefix: str, trusted_proxy: str | None, trusted_proxy_headers: str,
          drain_timeout: float, grpc_port: int | None) -> None:
    """Serve the app with waitress (works on Linux, macOS and Windows).

    On POSIX, SIGTERM stops it gracefully: new connections are refused, requests
    in flight finish, and the process exits 0. A body declared larger than
    MAX_CONTENT_LENGTH is refused (413) before any of it is read. With
    --grpc-port, gRPC serves the same data plane beside it and SIGTERM drains
    both at once, within --drain-timeout.
    """
    from ..errors import ConfigError
    from ..rest.factory import create_app
    from ..servers import waitress_server
    from . import process

    proxy = _proxy_settings(trusted_proxy, trusted_proxy_headers)
    if grpc_port is not None:
        _check_grpc_installed()
    try:
        app = create_app(env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    process.prepare(app)
    try:
        server = waitress_server.create(
            app, host=host, port=port, threads=threads, url_prefix=url_prefix,
            channel_timeout=channel_timeout, connection_limit=connection_limit,
            # Slow clients are buffered by waitress's event loop, not a worker thread; idle
            # ones are closed when it next looks (every cleanup_interval, 30 s by default),
            # so look at least every channel timeout.
            cleanup_interval=min(30, channel_timeout), **proxy,
            request_timeout=request_timeout, body_limit=app.config.get("MAX_CONTENT_LENGTH"),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    grpc_server = _grpc_server(app, host, grpc_port) if grpc_port is not None else None
    for bound_host, bound_port in waitress_server.listening(server):
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        click.echo(f"iris-service serving on http://{shown}:{bound_port}{server.adj.url_prefix} "
                   f"({threads} threads)", err=True)
    if grpc_server is None:
        waitress_server.run(server, drain_timeout=drain_timeout)
        return
    grpc_server.start()
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"iris-service gRPC on {shown}:{grpc_server.port} ({grpc_server.threads} threads)", err=True)
    stopped: list[Any] = []
    try:
        # SIGTERM: gRPC refuses new calls and drains beside waitress, with the same grace.
        waitress_server.run(server, drain_timeout=drain_timeout,
                            on_stop=lambda: stopped.append(grpc_server.stop(drain_timeout)))
    finally:
        done = stopped[0] if stopped else grpc_server.stop(0)
        done.wait(drain_timeout + 1.0)


def _check_grpc_installed() -> None:
    """Stop before loading any model when the ``grpc`` extra is missing, saying how to install it."""
    from ..grpc import INSTALL_HINT, missing

    absent = missing()
    if absent:
        raise click.ClickException(f"--grpc-port needs {', '.join(absent)}: {INSTALL_HINT}")


def _grpc_server(app: Any, host: str, port: int) -> Any:
    """The gRPC server on the REST app's data plane and metrics registry, bound to ``host:port``."""
    from ..grpc.server import create_server
    from ..rest.state import state_of

    state = state_of(app)
    # The app's registry, so /metrics shows the gRPC series too (none with METRICS_ENABLED off).
    registry = getattr(state.metrics, "registry", None)
    try:
        # The REST app's payload log too: one queue, one writer, flushed by one exit hook.
        payload_log = state.payload_log.log if state.payload_log is not None else None
        return create_server(state.dataplane, app.config, host=host, port=port, registry=registry,
                             payload_log=payload_log)
    except OSError as exc:
        raise click.ClickException(f"Cannot listen on {host}:{port} for gRPC: {exc}") from None


def _proxy_settings(trusted_proxy: str | None, headers: str) -> dict[str, Any]:
    """waitress's trusted proxy settings, refusing the half-configured cases.

    waitress would silently trust X-Forwarded-Proto for a proxy given without
    headers (with a deprecation warning); naming them is required here instead.
    """
    names = {name.lower() for name in headers.replace(",", " ").split()}
    if names and not trusted_proxy:
        raise click.UsageError("--trusted-proxy-headers needs --trusted-proxy (the proxy's address).")
    if not trusted_proxy:
        return {}
    if not names:
        raise click.UsageError(
            "--trusted-proxy needs --trusted-proxy-headers, e.g. 'x-forwarded-for x-forwarded-proto'."
        )
    return {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": names}
