"""Detached Ed25519 signatures over an artifact's manifest and digest.

A manifest's SHA-256 proves the file was not damaged, not who wrote it: anyone
who can write the model folder can write a matching hash beside a malicious
pickle. A signature by a key the server trusts (``TRUSTED_KEYS``) can only be
made by whoever holds the private key, which never goes near the server. The
cryptography is ``cryptography``'s Ed25519; this module only decides what is
signed and where the signature lives.

``model.joblib.sig`` (beside ``model.joblib.json``) is a small JSON object:
the algorithm, the key id (SHA-256 of the raw public key) and a base64
signature over ``statement()``, which binds the exact manifest bytes and the
artifact's SHA-256. The server checks it on the manifest alone, then reads the
artifact and checks its digest is the signed one, and only then loads it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ArtifactError
from .files import atomic_write_bytes, sha256_bytes
from .manifest import manifest_path, parse_manifest, read_described

ALGORITHM = "ed25519"
SIGNATURE_FORMAT = 1
#: Names what is signed, so a signature over these bytes means nothing in any other context.
STATEMENT_PREFIX = b"iris-service-artifact-v1\n"
SIGNATURE_SUFFIX = ".sig"
#: A signature file is a few hundred bytes; anything far larger is not one (and is not read whole).
MAX_SIGNATURE_FILE = 64 * 1024


class KeyFileError(ValueError):
    """A key file that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class TrustedKey:
    """A public key the server accepts signatures from, and the file it came from."""

    key_id: str
    public_key: Ed25519PublicKey
    source: str


def key_id(public_key: Ed25519PublicKey) -> str:
    """The SHA-256 (hex) of the raw 32-byte public key: short to compare, the same in any encoding."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def signature_path(artifact_path: Path) -> Path:
    """The signature of ``model.joblib`` is ``model.joblib.sig``, beside its manifest."""
    return artifact_path.with_name(artifact_path.name + SIGNATURE_SUFFIX)


def statement(manifest_bytes: bytes, artifact_sha256: str) -> bytes:
    """The bytes that are signed: the exact manifest (by digest) and the artifact's digest.

    Signing the manifest's bytes, not a re-serialisation of its fields, leaves
    nothing to canonicalise: one changed byte anywhere in it breaks the signature.
    """
    manifest_digest = sha256_bytes(manifest_bytes)
    return STATEMENT_PREFIX + f"{manifest_digest}\n{artifact_sha256}\n".encode("ascii")


# Keys.

def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair: (private key as PKCS8 PEM, public key as PEM)."""
    return _pems(Ed25519PrivateKey.generate())


def _pems(private: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def write_keypair(out: Path) -> tuple[Path, Path, str]:
    """Write a new private key to ``out`` (mode 0600) and its public key to ``out.pub``.

    Neither file is overwritten: replacing a private key by accident loses the
    ability to sign for every server that trusts it. The private key is
    created with its final mode, so it is never readable by others, not even
    for the moment between creating and chmod-ing it. Returns both paths and the key id.
    """
    pub = out.with_name(out.name + ".pub")
    for path in (out, pub):
        if path.exists():
            raise KeyFileError(f"{path} exists; not overwriting a key (remove it or choose another --out).")
    private = Ed25519PrivateKey.generate()
    private_pem, public_pem = _pems(private)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        pub.write_bytes(public_pem)
    except OSError as exc:
        raise KeyFileError(f"Cannot write the key pair {out}: {exc.strerror or exc}") from None
    return out, pub, key_id(private.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM (PKCS8) file, or an unencrypted OpenSSH one."""
    data = _read_key_file(path, "private key")
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            key: Any = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying the key needs a password
        raise KeyFileError(f"Private key {path} is encrypted; give an unencrypted Ed25519 key.") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path} is not a PEM (PKCS8) private key.") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"Private key {path} is not an Ed25519 key ({_kind(key)}).")
    return key


def load_public_key(path: Path) -> TrustedKey:
    """An Ed25519 public key from a PEM file or an OpenSSH ``ssh-ed25519 AAAA...`` line."""
    data = _read_key_file(path, "public key").strip()
    if b"PRIVATE KEY" in data:
        # A private key copied to the server defeats the point; refuse it by name.
        raise KeyFileError(f"{path} is a private key; trust its .pub file instead.")
    try:
        if data.startswith(b"ssh-"):
            key: Any = serialization.load_ssh_public_key(data)
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path} is not a PEM or OpenSSH public key.") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"Public key {path} is not an Ed25519 key ({_kind(key)}).")
    return TrustedKey(key_id=key_id(key), public_key=key, source=Path(path).name)


def load_trusted_keys(paths: Iterable[str | Path]) -> tuple[TrustedKey, ...]:
    """Every key in ``TRUSTED_KEYS``, read and checked; the first bad file raises."""
    return tuple(load_public_key(Path(p)) for p in paths)


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"The {what} file {path} does not exist.") from None
    except OSError as exc:
        raise KeyFileError(f"Cannot read the {what} file {path}: {exc.strerror or exc}") from None


def _kind(key: Any) -> str:
    return type(key).__name__.lstrip("_")


# Signing and verifying.

def sign_artifact(artifact_path: Path | str, private_key: Ed25519PrivateKey) -> Path:
    """Sign an artifact whose manifest still vouches for it; write ``<file>.sig``.

    The file's digest is checked against its manifest first, so a signature
    never vouches for bytes that already fail the hash check.
    """
    path = Path(artifact_path)
    raw_manifest, manifest = read_described(path)
    try:
        digest = sha256_bytes(path.read_bytes())
    except OSError as exc:
        raise ArtifactError(f"Cannot read artifact {path.name}: {exc.strerror or exc}") from None
    if digest != manifest.sha256:
        raise ArtifactError(
            f"SHA-256 mismatch for {path.name}: the manifest says {manifest.sha256}, "
            f"the file is {digest}. Not signing it."
        )
    signature = private_key.sign(statement(raw_manifest, digest))
    document = {
        "format": SIGNATURE_FORMAT,
        "algorithm": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    target = signature_path(path)
    atomic_write_bytes(target, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    return target


def verify_signature(
    artifact_path: Path, manifest_bytes: bytes, artifact_sha256: str, trusted_keys: Sequence[TrustedKey]
) -> TrustedKey:
    """Check that a trusted key signed these manifest bytes and this artifact digest.

    Needs only the manifest and the signature file, so it runs before the
    artifact is read. Returns the key that signed; raises ``ArtifactError``
    (409), naming files only, for anything unsigned, malformed or untrusted.
    """
    path = Path(artifact_path)
    sig_path = signature_path(path)
    document = _read_signature(path, sig_path)
    by_id = {key.key_id: key for key in trusted_keys}
    key = by_id.get(document["key_id"])
    if key is None:
        raise ArtifactError(
            f"{path.name} is signed by key {document['key_id'][:16]}, which is not in TRUSTED_KEYS; "
            "refusing to load it."
        )
    try:
        key.public_key.verify(document["signature"], statement(manifest_bytes, artifact_sha256))
    except InvalidSignature:
        raise ArtifactError(
            f"Signature {sig_path.name} does not match {manifest_path(path).name}: the manifest or the "
            f"signature changed after signing. Refusing to load {path.name}."
        ) from None
    return key


def verify_artifact(
    artifact_path: Path | str, manifest_bytes: bytes, artifact_bytes: bytes, trusted_keys: Sequence[TrustedKey]
) -> TrustedKey:
    """The whole check on bytes in hand: a trusted signature, then the artifact's digest."""
    path = Path(artifact_path)
    manifest = parse_manifest(path, manifest_bytes)
    key = verify_signature(path, manifest_bytes, manifest.sha256, trusted_keys)
    digest = sha256_bytes(artifact_bytes)
    if digest != manifest.sha256:
        raise ArtifactError(
            f"SHA-256 mismatch for {path.name}: the signed manifest says {manifest.sha256}, "
            f"the file is {digest}. Refusing to load it."
        )
    return key


def _read_signature(path: Path, sig_path: Path) -> dict[str, Any]:
    """The signature file's fields, checked; the signature decoded to bytes."""
    try:
        with sig_path.open("rb") as handle:
            raw = handle.read(MAX_SIGNATURE_FILE + 1)
    except FileNotFoundError:
        raise ArtifactError(
            f"{path.name} is not signed: TRUSTED_KEYS is set and {sig_path.name} is missing; "
            f"sign it with 'iris-service sign {path.name} --key KEY'."
        ) from None
    except OSError as exc:
        raise ArtifactError(f"Cannot read signature {sig_path.name}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SIGNATURE_FILE:
        raise ArtifactError(f"Signature {sig_path.name} is malformed: larger than {MAX_SIGNATURE_FILE} bytes.")
    try:
        document = json.loads(raw.decode("utf-8"))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        if document.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm must be {ALGORITHM!r}, not {document.get('algorithm')!r}")
        kid = document.get("key_id")
        if not (isinstance(kid, str) and len(kid) == 64 and all(c in "0123456789abcdef" for c in kid)):
            raise ValueError("key_id must be 64 lowercase hex digits")
        encoded = document.get("signature")
        if not isinstance(encoded, str):
            raise ValueError("signature must be a base64 string")
        signature = base64.b64decode(encoded, validate=True)
        if len(signature) != 64:
            raise ValueError("an Ed25519 signature is 64 bytes")
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError included
        raise ArtifactError(f"Signature {sig_path.name} is malformed: {exc}.") from None
    return {"key_id": kid, "signature": signature}
