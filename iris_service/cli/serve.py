"""``iris-service serve``: granian (the default) or waitress, with a graceful SIGTERM, on any OS."""
from __future__ import annotations

from typing import Any

import click

from ..extras import install_hint
from ..settings import ENV_VAR

SERVERS = ("granian", "waitress")


@click.command()
@click.option("--server", type=click.Choice(SERVERS), default=None,
              help="HTTP server: granian (default; Rust I/O, several worker processes) or waitress (pure "
                   "Python, one process; the choice for Windows hosts and the default with --grpc-port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="granian: worker processes, each with its own --threads (one on Windows). "
                   "waitress runs one process.")
@click.option("--threads", default=None, type=click.IntRange(1, 1024),
              help="Threads running the app, per process (default: waitress 8, granian 2, or 4 with BATCHING on or "
                   "auto). With BATCHING on or auto at least 2: micro-batching gathers requests in flight in one "
                   "process.")
@click.option("--runtime-threads", default=1, show_default=True, type=click.IntRange(1, 64),
              help="granian: Rust threads per worker for network I/O (1 is enough for a WSGI app).")
@click.option("--env", "env", type=click.Choice(["development", "testing", "production"]), default=None,
              help=f"Config environment (default: ${ENV_VAR} or development).")
@click.option("--channel-timeout", default=120, show_default=True, type=click.IntRange(1),
              help="waitress: seconds of client silence before a connection is closed (slow clients).")
@click.option("--request-timeout", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds a client has to send a whole request, headers and body; later ones get a 408. "
                   "granian bounds the headers only: a client holding back its body holds a thread.")
@click.option("--connection-limit", default=100, show_default=True, type=click.IntRange(1),
              help="waitress: open connections accepted at once; at the limit, idle connections and requests "
                   "still arriving after 2 s are closed to make room. granian: requests each worker admits at "
                   "once (its backpressure). More wait in the listen backlog.")
@click.option("--url-prefix", default="", metavar="PATH",
              help="Mount the app under PATH (e.g. /api) behind a proxy that forwards the prefix.")
@click.option("--trusted-proxy", default=None, metavar="ADDRESS",
              help="Address of the reverse proxy whose forwarding headers are believed ('*' for any).")
@click.option("--trusted-proxy-headers", default="", metavar="NAMES",
              help="Headers believed from --trusted-proxy, e.g. 'x-forwarded-for x-forwarded-proto' "
                   "or 'forwarded'.")
@click.option("--drain-timeout", default=25.0, show_default=True, type=click.FloatRange(0),
              help="Seconds SIGTERM waits for requests in flight before closing their connections "
                   "(granian: before killing the worker).")
@click.option("--grpc-port", default=None, type=click.IntRange(0, 65535), metavar="PORT",
              help="Also serve the Open Inference Protocol over gRPC on PORT, same --host and models, beside "
                   f"waitress; needs the grpc extra: {install_hint('grpc')}.")
def serve(server: str | None, host: str, port: int, workers: int, threads: int | None, runtime_threads: int,
          env: str | None, channel_timeout: int, request_timeout: float, connection_limit: int, url_prefix: str,
          trusted_proxy: str | None, trusted_proxy_headers: str, drain_timeout: float,
          grpc_port: int | None) -> None:
    """Serve the app with granian or waitress (both work on Linux, macOS and Windows).

    SIGTERM stops it gracefully: new connections are refused, requests in
    flight finish, and the process exits 0. A body larger than
    MAX_CONTENT_LENGTH is refused (413) before it is read in full, declared or
    chunked. With --grpc-port, gRPC serves the same data plane beside waitress
    and SIGTERM drains both at once, within --drain-timeout.

    granian cannot bound the time a client takes to send a request body, nor
    close idle keep-alive connections (--channel-timeout): put it behind a proxy
    that buffers requests where clients are not trusted, or use waitress or
    gunicorn (gunicorn -c gunicorn.conf.py, Linux) there.
    """
    from ..errors import ConfigError
    from . import process, serve_granian

    chosen = server
    server = server or ("waitress" if grpc_port is not None else "granian")
    proxy = _proxy_settings(trusted_proxy, trusted_proxy_headers)
    if server == "granian":
        serve_granian.check_installed()
        if grpc_port is not None:
            raise click.UsageError("--grpc-port serves beside waitress (one process, one set of models): "
                                   "add --server waitress.")
    elif workers > 1:
        raise click.UsageError("waitress runs one process: use --server granian --workers N "
                               "(or gunicorn -w N on Linux).")
    if grpc_port is not None:
        _check_grpc_installed()
    # Before the app (and prometheus-client) is imported: the client picks its storage then.
    serve_granian.prepare_metrics_dir(workers)
    from ..rest.factory import create_app
    from ..runtime.batch_policy import BatchingSettings

    try:
        app = create_app(env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if grpc_port is None and app.config.get("GRPC_PORT"):  # IRIS_SERVICE_GRPC_PORT, as gunicorn's workers
        grpc_port = int(app.config["GRPC_PORT"])
        if server == "granian":
            if chosen == "granian" or workers > 1:
                raise click.UsageError("GRPC_PORT serves gRPC beside waitress (one process, one set of models): "
                                       "add --server waitress, or unset IRIS_SERVICE_GRPC_PORT.")
            server = "waitress"
        _check_grpc_installed()
    threads = serve_granian.pick_threads(threads, BatchingSettings.mode_of(app.config), server)
    process.prepare(app)
    if server == "granian":
        from ..servers.granian_server import GranianSettings

        settings = GranianSettings(host=host, port=port, workers=workers, threads=threads,
                                   runtime_threads=runtime_threads, backpressure=connection_limit,
                                   header_timeout=request_timeout, drain_timeout=drain_timeout)
        serve_granian.serve(app, env, settings, proxy, url_prefix)
        return
    _serve_waitress(app, host=host, port=port, threads=threads, url_prefix=url_prefix,
                    channel_timeout=channel_timeout, connection_limit=connection_limit, proxy=proxy,
                    request_timeout=request_timeout, drain_timeout=drain_timeout, grpc_port=grpc_port)


def _serve_waitress(app: Any, *, host: str, port: int, threads: int, url_prefix: str, channel_timeout: int,
                    connection_limit: int, proxy: dict[str, Any], request_timeout: float, drain_timeout: float,
                    grpc_port: int | None) -> None:
    """waitress with its deadlines and drain, and gRPC beside it when asked."""
    from ..servers import waitress_server, wsgi_layers

    try:
        server = waitress_server.create(
            # Our prefix layer, not waitress's url_prefix: waitress serves paths outside it too.
            wsgi_layers.wrap(app, url_prefix=url_prefix), host=host, port=port, threads=threads,
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
        prefix = "/" + url_prefix.strip("/") if url_prefix.strip("/") else ""
        click.echo(f"iris-service serving on http://{shown}:{bound_port}{prefix} "
                   f"(waitress, {threads} threads)", err=True)
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
        payload_log = state.payload_log
        return create_server(state.dataplane, app.config, host=host, port=port, registry=registry,
                             tracer=getattr(state.tracing, "tracer", None), payload_log=payload_log)
    except OSError as exc:
        raise click.ClickException(f"Cannot listen on {host}:{port} for gRPC: {exc}") from None


def _proxy_settings(trusted_proxy: str | None, headers: str) -> dict[str, Any]:
    """The trusted proxy settings (waitress's names, our layer's under granian), refusing the half-configured cases.

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
    from ..servers.wsgi_layers import check_proxy_headers

    try:
        check_proxy_headers(names)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": names}
