"""``iris-service keygen`` and ``iris-service sign``: the keys that make artifacts unforgeable."""
from __future__ import annotations

from pathlib import Path

import click

from ..training.writing import file_in_the_way, sign_written, signing_key


@click.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Private key file to write (mode 0600); the public key goes to OUT.pub.")
def keygen(out: Path) -> None:
    """Make an Ed25519 key pair for signing artifacts.

    Keep the private key where models are built (CI, a workstation), never on
    the server; give the server OUT.pub in IRIS_SERVICE_TRUSTED_KEYS.
    """
    from ..artifacts.signing import KeyFileError, write_keypair

    blocking = file_in_the_way(out)
    if blocking is not None:
        raise click.ClickException(f"Cannot write the key pair {out}: {blocking} is a file, not a folder.")
    try:
        private, public, kid = write_keypair(out)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {private} (private key: keep it secret) and {public} (key id {kid[:16]})")


@click.command()
@click.argument("artifact", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Private key file (PEM PKCS8, from iris-service keygen).")
def sign(artifact: Path, key_path: Path) -> None:
    """Sign an artifact whose SHA-256 still matches its manifest; writes ARTIFACT.sig.

    Nothing is unpickled: the signature vouches for the manifest's bytes and
    the file's digest, which are checked here first.
    """
    sign_written(artifact, signing_key(key_path))
