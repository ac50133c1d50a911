"""What an artifact file is, where it may live, and what writing one replaces.

The manifest says which loader runs, and a pickle loader runs code: so the
manifest's word is checked against the file's name and its first bytes before
anything is loaded. A model folder is a tree of ``<name>/<version>/`` folders
that the server trusts as a whole, so a link that leads out of it (and a
hidden folder such as ``.git`` inside it) is not part of it. Writers never
replace an artifact unless asked, and then replace the version whole.
"""
from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import ArtifactError
from .files import PICKLE_FORMATS, SUFFIX_FORMATS
from .manifest import manifest_path

#: Leading bytes of joblib's compressed files (joblib.compressor) and of a
#: pickle of protocol 2 or later (the PROTO opcode); joblib and Python default
#: to protocols 4-5, and older protocols are not accepted as artifacts.
PICKLE_MAGIC = (
    b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05",
    b"\x78",  # zlib
    b"\x1f\x8b",  # gzip
    b"BZh",  # bz2
    b"\xfd7zXZ\x00",  # xz
    b"\x5d\x00\x00",  # lzma
    b"\x04\x22\x4d\x18",  # lz4
)
ZIP_MAGIC = b"PK\x03\x04"
#: The key of ``ModelProto.ir_version`` (field 1, a varint): protobuf writes
#: fields in number order and onnxruntime requires this one, so a model begins with it.
ONNX_IR_VERSION_KEY = 0x08
CONTENT_NAMES = {
    "pickle": "a pickle",
    "skops": "a skops archive",
    "onnx": "an ONNX model",
    None: "none of joblib/pickle, skops or ONNX",
}


def family(fmt: str) -> str:
    """joblib and pickle files are one kind (one loader); other formats are their own."""
    return "pickle" if fmt in PICKLE_FORMATS else fmt


def sniff(data: bytes) -> str | None:
    """The kind of artifact ``data`` looks like: "pickle", "skops", "onnx", or None.

    Each kind has a signature the others cannot have: a skops file is a zip
    archive holding ``schema.json``; joblib writes a pickle (``\\x80`` and the
    protocol) or a compressed stream with its compressor's magic; ONNX has no
    magic, but a model's protobuf begins with its ``ir_version`` field. The
    ONNX loader then parses the whole model (``onnx_safety``).
    """
    if data.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:  # reads the directory, extracts nothing
                return "skops" if "schema.json" in archive.namelist() else None
        except (zipfile.BadZipFile, ValueError, OSError):
            return None
    if data.startswith(PICKLE_MAGIC):
        return "pickle"
    if len(data) > 1 and data[0] == ONNX_IR_VERSION_KEY and 0 < data[1] < 0x80:  # ir_version 1-127
        return "onnx"
    return None


def check_suffix(path: Path, fmt: str) -> None:
    """Refuse a manifest whose format is not the one the file's name says.

    A ``model.skops`` is chosen as the artifact that loads without running
    code; a manifest saying ``joblib`` beside it must not get it unpickled.
    """
    named = SUFFIX_FORMATS.get(path.suffix.lower())
    if named is None:
        raise ArtifactError(
            f"{path.name} has none of the artifact suffixes ({', '.join(sorted(SUFFIX_FORMATS))}) that "
            f"would say it is {fmt!r} as its manifest does; refusing to load it."
        )
    if family(named) != family(fmt):
        raise ArtifactError(
            f"{path.name} is named as a {named!r} artifact but its manifest says {fmt!r}; refusing to load it."
        )


def check_content(name: str, fmt: str, data: bytes) -> None:
    """Refuse bytes that are not what the manifest (or, registering, the file name) says they are."""
    found = sniff(data)
    if found != family(fmt):
        raise ArtifactError(
            f"Not a readable {fmt} file: {name} holds {CONTENT_NAMES[found]}, not {CONTENT_NAMES[family(fmt)]}; "
            "refusing to load it."
        )


def is_hidden(path: Path) -> bool:
    """``.git``, ``.ipynb_checkpoints``, editors' and our own temp files: never models or versions."""
    return path.name.startswith(".")


def resolves_inside(root: Path | None, path: Path) -> bool:
    """Whether ``path``, links followed, is ``root`` or under it (always, without a root)."""
    if root is None:
        return True
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a loop of links
        return False


def check_inside(root: Path | None, path: Path, what: str) -> None:
    """Refuse ``path`` when it resolves (through links) outside ``root``.

    The server publishes what it finds in the model folder (names, manifests,
    errors about the files), so a link from there to any other file would let
    whoever can write the folder read it through the API. The message names
    ``what`` only, never where the link leads.
    """
    if not resolves_inside(root, path):
        raise ArtifactError(f"{what} is a link that leads outside MODEL_DIR; refusing it.")


def occupied(target: Path, *, whole_folder: bool) -> list[Path]:
    """The artifacts and manifests that writing ``target`` would replace or leave stale.

    ``whole_folder`` (a ``<name>/<version>/`` folder): every artifact there, since
    any of them may be the one served. Otherwise the file, its manifest and its
    other formats (the same name with another artifact suffix, e.g. an
    ``export-onnx`` of the model being replaced).
    """
    folder = target.parent
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        base = Path(path.name[: -len(".json")] if path.name.endswith(".json") else path.name)
        if base.suffix.lower() not in SUFFIX_FORMATS or not (path.is_file() or path.is_symlink()):
            continue
        if whole_folder or base.stem == target.stem:
            found.append(path)
    if not whole_folder and not (target.exists() or manifest_path(target).exists()):
        return []  # only other formats beside it: writing this file replaces nothing
    return found


def occupied_message(target: Path, found: Iterable[Path], *, whole_folder: bool) -> str:
    """The one-line refusal of a writer asked to replace ``found`` without ``--force``."""
    if whole_folder:
        names = ", ".join(sorted({p.name for p in found}))
        return (f"{target.parent} already holds an artifact ({names}); "
                "pass --force to replace that version whole.")
    return f"{target} already exists; pass --force to replace it (and its other formats)."


def remove_stale(found: Iterable[Path], keep: Path) -> list[Path]:
    """Delete what a forced write replaced, manifests first, except ``keep`` and its manifest.

    Called after the new artifact is written, so a failed write leaves the old
    version whole; manifests go first so no old artifact stays loadable.
    """
    kept = {keep, manifest_path(keep)}
    stale = [p for p in found if p not in kept]
    stale.sort(key=lambda p: not p.name.endswith(".json"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
