"""``train``: the click command behind ``iris-service train``, ``python -m training`` and ``flask train``.

It lives with the training code, not in the CLI package, so the app factory can
offer it as ``flask train`` without importing the command line.
"""
from __future__ import annotations

from pathlib import Path

import click

from iris_service.settings import default_model_path, instance_path


@click.command()
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
@click.option("--force", is_flag=True, help="Replace an existing artifact (with --model-dir: the whole version).")
def train(out: Path | None, model_dir: Path | None, kind: str, name: str, version: str | None,
          seed: int, n_estimators: int, fmt: str, force: bool) -> None:
    """Train a model on the Iris data set and write a verified artifact."""
    from . import default_version
    from . import train as fit

    version = version or default_version()
    if out is not None and model_dir is not None:
        raise click.UsageError("Give --out or --model-dir, not both.")
    if model_dir is not None:
        out = model_dir / name / version / f"model.{fmt}"
    elif out is None:
        out = default_model_path(instance_path()).with_suffix(f".{fmt}")
    replaced = claim(out, whole_folder=model_dir is not None, force=force)
    try:
        result = fit(out, kind=kind, name=name, version=version, seed=seed,
                                n_estimators=n_estimators, fmt=fmt)
        replace_stale(replaced, out)
    except OSError as exc:  # a full disk or a read-only folder: say so, no traceback
        raise click.ClickException(f"Could not write {out}: {exc.strerror or exc}") from None
    click.echo(f"trained {kind} {name} {result.manifest.version}: held-out accuracy {result.accuracy:.4f}")
    click.echo(f"wrote {result.path}")


def claim(target: Path, *, whole_folder: bool, force: bool) -> list[Path]:
    """What writing ``target`` replaces; without ``--force`` anything at all is a one-line refusal."""
    from iris_service.artifacts.formats import occupied, occupied_message

    found = occupied(target, whole_folder=whole_folder)
    if found and not force:
        raise click.ClickException(occupied_message(target, found, whole_folder=whole_folder))
    return found


def replace_stale(found: list[Path], written: Path) -> None:
    """After a forced write: remove the replaced artifacts, so no older one is served."""
    from iris_service.artifacts.formats import remove_stale

    for path in remove_stale(found, keep=written):
        click.echo(f"removed {path}")
