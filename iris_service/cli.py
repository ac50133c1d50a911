"""The ``iris-service`` command: serve, train, register."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .config import ENV_VAR, default_model_path, instance_path


@click.group()
@click.version_option(package_name="iris-service")
def main() -> None:
    """Serve scikit-learn models over a validated REST API."""


@main.command()
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
def serve(host: str, port: int, threads: int, env: str | None, channel_timeout: int, request_timeout: float,
          connection_limit: int, url_prefix: str, trusted_proxy: str | None, trusted_proxy_headers: str,
          drain_timeout: float) -> None:
    """Serve the app with waitress (works on Linux, macOS and Windows).

    On POSIX, SIGTERM stops it gracefully: new connections are refused, requests
    in flight finish, and the process exits 0. A body declared larger than
    MAX_CONTENT_LENGTH is refused (413) before any of it is read.
    """
    import logging

    from . import create_app
    from . import server as waitress_server
    from .config import ConfigError

    proxy = _proxy_settings(trusted_proxy, trusted_proxy_headers)
    try:
        app = create_app(env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    # As waitress.serve does: its warnings (queue depth, socket errors) and our
    # errors' tracebacks reach stderr; the request log has its own handler.
    logging.basicConfig()
    logging.getLogger(waitress_server.__name__).setLevel(logging.INFO)
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
    for bound_host, bound_port in waitress_server.listening(server):
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        click.echo(f"iris-service serving on http://{shown}:{bound_port}{server.adj.url_prefix} "
                   f"({threads} threads)", err=True)
    waitress_server.run(server, drain_timeout=drain_timeout)


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


@main.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Artifact file to write (default: the development model in the instance folder).")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write to MODEL_DIR/<name>/<version>/model.<format> instead of --out.")
@click.option("--model", "kind", type=click.Choice(["logreg", "random_forest"]), default="logreg", show_default=True)
@click.option("--name", default="iris", show_default=True, help="Model name recorded in the manifest.")
@click.option("--version", "version", default=None, help="Model version (default: a UTC timestamp).")
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--n-estimators", default=100, show_default=True, type=click.IntRange(1), help="Trees (random_forest).")
@click.option("--format", "fmt", type=click.Choice(["joblib", "onnx", "skops"]), default="joblib",
              show_default=True, help="onnx and skops artifacts load without running code.")
def train(out: Path | None, model_dir: Path | None, kind: str, name: str, version: str | None,
          seed: int, n_estimators: int, fmt: str) -> None:
    """Train a model on the Iris data set and write a verified artifact."""
    import training

    version = version or training.default_version()
    if out is not None and model_dir is not None:
        raise click.UsageError("Give --out or --model-dir, not both.")
    if model_dir is not None:
        out = model_dir / name / version / f"model.{fmt}"
    elif out is None:
        out = default_model_path(instance_path()).with_suffix(f".{fmt}")
    try:
        result = training.train(out, kind=kind, name=name, version=version, seed=seed,
                                n_estimators=n_estimators, fmt=fmt)
    except OSError as exc:  # a full disk or a read-only folder: say so, no traceback
        raise click.ClickException(f"Could not write {out}: {exc.strerror or exc}") from None
    click.echo(f"trained {kind} {name} {result.manifest.version}: held-out accuracy {result.accuracy:.4f}")
    click.echo(f"wrote {result.path}")


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name to serve the model under.")
@click.option("--version", "version", default=None, help="Version (default: a UTC timestamp).")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Registry folder (default: the instance folder's models/).")
@click.option("--trust", is_flag=True, help="I trust this file: loading a pickle runs code from it.")
def register(path: Path, name: str, version: str | None, model_dir: Path | None, trust: bool) -> None:
    """Register a joblib/pickle model trained elsewhere (for example in a notebook).

    The file is unpickled once, only with --trust, to read what the estimator
    knows about itself; from then on the server loads it only if its SHA-256
    still matches the manifest written here.
    """
    from .registration import register_pickle

    if not trust:
        raise click.UsageError(
            f"Loading {path.name} runs any code inside it. If you trust where it came from, "
            "run again with --trust."
        )
    import training

    folder = (model_dir or instance_path() / "models") / name / (version or training.default_version())
    try:
        manifest, target = register_pickle(path, name=name, version=folder.name, folder=folder)
    except Exception as exc:  # shown to the user, not a traceback
        raise click.ClickException(str(exc)) from None
    kind = manifest.task
    classes = f", classes {', '.join(manifest.class_names or ())}" if manifest.class_names else ""
    click.echo(f"registered {name} {manifest.version}: {manifest.estimator} ({kind}, "
               f"{manifest.n_features} features{classes})")
    click.echo(f"wrote {target}")


@main.command("export-onnx")
@click.argument("name")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Registry folder (default: the instance folder's models/).")
@click.option("--version", "version", default=None, help="Version to export (default: the newest).")
def export_onnx(name: str, model_dir: Path | None, version: str | None) -> None:
    """Convert a registered model to ONNX, check it matches, write model.onnx beside it.

    Served with PICKLE_ALLOWED=false, the ONNX artifact answers the same
    requests with the same classes, without ever unpickling anything.
    """
    from .errors import IrisServiceError
    from .onnx_format import export_artifact
    from .registry import ModelSource, source_artifact

    source = ModelSource(name=name, model_dir=(model_dir or instance_path() / "models") / name)
    try:
        manifest, target = export_artifact(source_artifact(source, version))
    except IrisServiceError as exc:
        raise click.ClickException(exc.message) from None
    check = manifest.training["onnx_export"]
    click.echo(f"exported {name} {manifest.version} to ONNX: checked on {check['sample']}, "
               f"classes equal, largest difference {check['max_abs_diff']:.2g}")
    click.echo(f"wrote {target}")


@main.command("predict-file")
@click.argument("source", metavar="INPUT")
@click.option("--out", "output", required=True, type=click.Path(path_type=Path),
              help="Output file (.csv/.parquet); a folder of parts with --engine dask.")
@click.option("--model", "model_name", default=None, help="Model name (default: the server's default model).")
@click.option("--chunk-size", default=100_000, show_default=True, type=click.IntRange(1),
              help="Rows per chunk (local engine).")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--quiet", is_flag=True, help="No progress bar (there is none when stderr is not a terminal).")
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="skip: write bad rows to <out>.rejects.csv (dask: <out>.rejects/) with the reason.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True)
@click.option("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster).")
@click.option("--env", "env", type=click.Choice(["development", "testing", "production"]), default=None,
              help=f"Config environment for the model settings (default: ${ENV_VAR} or development).")
def predict_file(source: str, output: Path, model_name: str | None, chunk_size: int, force: bool, quiet: bool,
                 on_error: str, engine: str, scheduler: str | None, env: str | None) -> None:
    """Score a CSV or Parquet file with the model the server would serve."""
    from . import create_app
    from .config import ConfigError
    from .errors import IrisServiceError
    from .filescoring import score_file, score_file_dask

    if scheduler and engine != "dask":
        raise click.UsageError("--scheduler needs --engine dask.")
    try:
        model = create_app(env).extensions["iris_service"].get(model_name)
        if engine == "dask":
            report = score_file_dask(source, output, model, scheduler=scheduler, force=force, on_error=on_error)
        else:
            report = score_file(Path(source), output, model, chunk_size=chunk_size, force=force,
                                on_error=on_error, progress=False if quiet else None)
    except (ConfigError, IrisServiceError) as exc:
        raise click.ClickException(str(exc)) from None
    rate = report.rows / report.seconds if report.seconds else 0.0
    click.echo(f"scored {report.rows} rows with {model.name} {model.version} in {report.seconds:.1f}s "
               f"({rate:,.0f} rows/s); wrote {report.output}", err=quiet)
    if report.rejects is not None:
        click.echo(f"rejected {report.rejected} rows; wrote {report.rejects}", err=quiet)


def run(args: list[str] | None = None) -> Any:  # pragma: no cover - console entry point
    return main.main(args=args, prog_name="iris-service")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
