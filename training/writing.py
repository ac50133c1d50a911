"""What every command that writes an artifact shares: ``--force`` and ``--sign-key``.

Here, beside ``train``, so ``iris-service register`` and ``export-onnx`` (in the
CLI package) and ``train`` (also offered as ``flask train``) use the same ones.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

#: ``--sign-key PATH`` on every command that writes an artifact.
SIGN_KEY_OPTION = click.option(
    "--sign-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Sign what is written with this private key (iris-service keygen); writes <artifact>.sig.",
)


#: A model name or version: one folder of the registry, usable in a URL as it is.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_folder_name(option: str, value: str) -> None:
    """``--name``/``--version`` become one folder under the registry, or a usage error (exit 2) says why.

    ``--name ../elsewhere`` wrote outside ``--model-dir``, ``a/b`` made a name no
    server finds, and a leading ``.`` a folder the registry skips as hidden.
    """
    if not _FOLDER_NAME.fullmatch(value):
        raise click.UsageError(f"{option} {value!r} must be one folder name: letters, digits, '.', '_' or '-', "
                               "starting with a letter or digit, at most 128 characters.")


def claim(target: Path, *, whole_folder: bool, force: bool) -> list[Path]:
    """What writing ``target`` replaces; without ``--force`` anything at all is a one-line refusal."""
    from iris_service.artifacts.formats import occupied, occupied_message

    found = occupied(target, whole_folder=whole_folder)
    if found and not force:
        raise click.ClickException(occupied_message(target, found, whole_folder=whole_folder))
    return found


def why_unwritable(target: Path, exc: OSError) -> str:
    """Why ``target`` could not be written, in words: a file where a folder must be, or the system's reason.

    ``mkdir`` under a file says "File exists" (or "Not a directory"), which
    names neither the file in the way nor what to do about it.
    """
    blocking = file_in_the_way(target)
    if blocking is not None:
        return f"{blocking} is a file, not a folder"
    return exc.strerror or str(exc)


def file_in_the_way(target: Path) -> Path | None:
    """The nearest existing ancestor of ``target`` when it is a file (so no folder can be made there)."""
    for parent in target.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def replace_stale(found: list[Path], written: Path) -> None:
    """After a forced write: remove the replaced artifacts, so no older one is served."""
    from iris_service.artifacts.formats import remove_stale

    for path in remove_stale(found, keep=written):
        click.echo(f"removed {path}")


def signing_key(path: Path | None) -> Ed25519PrivateKey | None:
    """The private key of ``--sign-key``/``--key``, or a one-line error."""
    if path is None:
        return None
    from iris_service.artifacts.signing import KeyFileError, load_private_key

    try:
        return load_private_key(path)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None


def sign_written(artifact: Path, key: Ed25519PrivateKey | None) -> None:
    """Write ``artifact``'s signature with ``key`` (nothing when no key was given)."""
    if key is None:
        return
    from iris_service.artifacts.signing import key_id, sign_artifact
    from iris_service.errors import IrisServiceError

    try:
        target = sign_artifact(artifact, key)
    except IrisServiceError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(f"Could not write the signature of {artifact}: {exc.strerror or exc}") from None
    click.echo(f"signed {artifact.name} with key {key_id(key.public_key())[:16]}; wrote {target}")
