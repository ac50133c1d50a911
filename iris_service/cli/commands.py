"""``iris-service register``, ``export-onnx`` and ``predict-file``: models and files, no server."""
from __future__ import annotations

from pathlib import Path

import click

from ..settings import ENV_VAR, instance_path
from ..training.writing import SIGN_KEY_OPTION, claim, replace_stale, sign_written, signing_key


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name to serve the model under.")
@click.option("--version", "version", default=None, help="Version (default: a UTC timestamp).")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Registry folder (default: the instance folder's models/).")
@click.option("--trust", is_flag=True, help="I trust this file: loading a pickle runs code from it.")
@click.option("--force", is_flag=True, help="Replace the version if it already holds an artifact.")
@click.option("--background", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV of training rows (header naming the features): stores what explanations need.")
@SIGN_KEY_OPTION
def register(path: Path, name: str, version: str | None, model_dir: Path | None, trust: bool, force: bool,
             background: Path | None, sign_key: Path | None) -> None:
    """Register a joblib/pickle model trained elsewhere (for example in a notebook).

    The file is unpickled once, only with --trust, to read what the estimator
    knows about itself; from then on the server loads it only if its SHA-256
    still matches the manifest written here.
    """
    from ..artifacts.registration import register_pickle

    if not trust:
        raise click.UsageError(
            f"Loading {path.name} runs any code inside it. If you trust where it came from, "
            "run again with --trust."
        )
    from ..training import default_version

    key = signing_key(sign_key)
    folder = (model_dir or instance_path() / "models") / name / (version or default_version())
    replaced = claim(folder / f"model{path.suffix.lower()}", whole_folder=True, force=force)
    try:
        manifest, target = register_pickle(path, name=name, version=folder.name, folder=folder,
                                           background=background)
        replace_stale(replaced, target)
    except Exception as exc:  # shown to the user, not a traceback
        raise click.ClickException(str(exc)) from None
    kind = manifest.task
    classes = f", classes {', '.join(manifest.class_names or ())}" if manifest.class_names else ""
    click.echo(f"registered {name} {manifest.version}: {manifest.estimator} ({kind}, "
               f"{manifest.n_features} features{classes})")
    click.echo(f"wrote {target}")
    sign_written(target, key)


@click.command("export-onnx")
@click.argument("name")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Registry folder (default: the instance folder's models/).")
@click.option("--version", "version", default=None, help="Version to export (default: the newest).")
@SIGN_KEY_OPTION
def export_onnx(name: str, model_dir: Path | None, version: str | None, sign_key: Path | None) -> None:
    """Convert a registered model to ONNX, check it matches, write model.onnx beside it.

    Served with PICKLE_ALLOWED=false, the ONNX artifact answers the same
    requests with the same classes, without ever unpickling anything.
    """
    from ..errors import IrisServiceError
    from ..runtime.onnx import export_artifact
    from ..serving.registry import ModelSource, source_artifact

    key = signing_key(sign_key)

    root = model_dir or instance_path() / "models"
    source = ModelSource(name=name, model_dir=root / name, root=root)
    try:
        manifest, target = export_artifact(source_artifact(source, version))
    except IrisServiceError as exc:
        raise click.ClickException(exc.message) from None
    check = manifest.training["onnx_export"]
    click.echo(f"exported {name} {manifest.version} to ONNX: checked on {check['sample']}, "
               f"classes equal, largest difference {check['max_abs_diff']:.2g}")
    click.echo(f"wrote {target}")
    sign_written(target, key)


@click.command("predict-file")
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
@click.option("--explain", is_flag=True,
              help="Add contribution_<feature> columns: each feature's contribution to the predicted class's score.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True)
@click.option("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster).")
@click.option("--env", "env", type=click.Choice(["development", "testing", "production"]), default=None,
              help=f"Config environment for the model settings (default: ${ENV_VAR} or development).")
def predict_file(source: str, output: Path, model_name: str | None, chunk_size: int, force: bool, quiet: bool,
                 on_error: str, explain: bool, engine: str, scheduler: str | None, env: str | None) -> None:
    """Score a CSV or Parquet file with the model the server would serve."""
    from ..errors import ConfigError, IrisServiceError
    from ..offline.files import score_file, score_file_dask
    from ..serving import DataPlane, ServingSettings, model_sources
    from ..settings import load_settings

    if scheduler and engine != "dask":
        raise click.UsageError("--scheduler needs --engine dask.")
    try:
        # The server's models and policies, without a web app: the same settings, the same data plane.
        config = load_settings(env)
        plane = DataPlane.start(model_sources(config), ServingSettings.from_config(config),
                                default=config.get("DEFAULT_MODEL"))
        model = plane.model(model_name)
        if explain:  # a model that cannot be explained fails here, before a row is read
            from ..runtime.explain import explainer_for

            explainer_for(model)
        if engine == "dask":
            report = score_file_dask(source, output, model, scheduler=scheduler, force=force, on_error=on_error,
                                     ranges=plane.ranges, explain=explain)
        else:
            report = score_file(Path(source), output, model, chunk_size=chunk_size, force=force,
                                on_error=on_error, progress=False if quiet else None, ranges=plane.ranges,
                                explain=explain)
    except (ConfigError, IrisServiceError) as exc:
        raise click.ClickException(str(exc)) from None
    rate = report.rows / report.seconds if report.seconds else 0.0
    click.echo(f"scored {report.rows} rows with {model.name} {model.version} in {report.seconds:.1f}s "
               f"({rate:,.0f} rows/s); wrote {report.output}", err=quiet)
    if report.rejects is not None:
        click.echo(f"rejected {report.rejected} rows; wrote {report.rejects}", err=quiet)
