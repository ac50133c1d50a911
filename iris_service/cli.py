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
def serve(host: str, port: int, threads: int, env: str | None) -> None:
    """Serve the app with waitress (works on Linux, macOS and Windows)."""
    import waitress

    from . import create_app
    from .config import ConfigError

    try:
        app = create_app(env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"iris-service serving on http://{host}:{port} ({threads} threads)", err=True)
    waitress.serve(app, host=host, port=port, threads=threads, ident="iris-service")


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
@click.option("--format", "fmt", type=click.Choice(["joblib"]), default="joblib", show_default=True)
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
        out = default_model_path(instance_path())
    result = training.train(out, kind=kind, name=name, version=version, seed=seed,
                            n_estimators=n_estimators, fmt=fmt)
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


def run(args: list[str] | None = None) -> Any:  # pragma: no cover - console entry point
    return main.main(args=args, prog_name="iris-service")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
