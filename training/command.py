"""``train``: the click command behind ``iris-service train``, ``python -m training`` and ``flask train``.

It lives with the training code, not in the CLI package, so the app factory can
offer it as ``flask train`` without importing the command line.
"""
from __future__ import annotations

from pathlib import Path

import click

from iris_service.settings import default_model_path, instance_path

from .writing import (
    SIGN_KEY_OPTION,
    check_folder_name,
    claim,
    replace_stale,
    sign_written,
    signing_key,
    why_unwritable,
)


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
@SIGN_KEY_OPTION
def train(out: Path | None, model_dir: Path | None, kind: str, name: str, version: str | None,
          seed: int, n_estimators: int, fmt: str, force: bool, sign_key: Path | None) -> None:
    """Train a model on the Iris data set and write a verified artifact."""
    from . import default_version
    from . import train as fit

    version = version or default_version()
    if out is not None and model_dir is not None:
        raise click.UsageError("Give --out or --model-dir, not both.")
    if model_dir is not None:
        check_folder_name("--name", name)
        check_folder_name("--version", version)
        out = model_dir / name / version / f"model.{fmt}"
    elif out is None:
        out = default_model_path(instance_path()).with_suffix(f".{fmt}")
    else:
        _check_suffix(out, fmt)
    key = signing_key(sign_key)  # a bad key fails before the work, not after
    replaced = claim(out, whole_folder=model_dir is not None, force=force)
    try:
        result = fit(out, kind=kind, name=name, version=version, seed=seed,
                                n_estimators=n_estimators, fmt=fmt)
        replace_stale(replaced, out)
    except OSError as exc:  # a full disk or a read-only folder: say so, no traceback
        raise click.ClickException(f"Could not write {out}: {why_unwritable(out, exc)}") from None
    click.echo(f"trained {kind} {name} {result.manifest.version}: held-out accuracy {result.accuracy:.4f}")
    click.echo(f"wrote {result.path}")
    sign_written(result.path, key)


def _check_suffix(out: Path, fmt: str) -> None:
    """``--out`` names a file of the chosen format, or a usage error (exit 2) says which name, before any work.

    The server picks an artifact's loader by its suffix, so ``--out models/iris``
    (a folder, as one might guess) cannot be served; saying so here beats a
    ``ValueError`` from the writer after the model was trained.
    """
    from iris_service.artifacts import SUFFIX_FORMATS

    named = SUFFIX_FORMATS.get(out.suffix.lower())
    if named == fmt or (fmt == "joblib" and named == "pickle"):
        return
    if out.is_dir() or not out.suffix:
        example = out / f"model.{fmt}"
        raise click.UsageError(f"--out {out} has no .{fmt} suffix: name the file, e.g. --out {example} "
                               "(or --model-dir for a registry folder).")
    other = f"; to write {named}, add --format {named}" if named in ("onnx", "skops") else ""
    raise click.UsageError(f"--out {out}: a {fmt} artifact needs a .{fmt} file name, not {out.name}{other}.")
