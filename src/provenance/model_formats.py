"""Which format a model's files are in, told from their bytes (never by loading them).

:func:`detect_format` reads at most a bounded header of each file (a zip's central directory,
a safetensors header, a pickle's first bytes, a JSON config): nothing is unpickled, imported
or parsed by a framework, so it is safe on untrusted files and runs before any digest check
matters. The result names a :class:`ModelFormat` from :data:`FORMATS` (recorded as
``certificate.model.format``) and the entry file inside the model (what a runtime loads).

Formats and what serves them (``runtime``; None: weights without the code that runs them,
served from an image of your own, ``provenance image build --dockerfile``, or behind
``provenance proxy``):

========================  ==================  ==================================
format                    files               runtime
========================  ==================  ==================================
pickle / joblib           scikit-learn        ``sklearn`` (unpickled after its digest checks)
onnx                      ``*.onnx``          ``onnxruntime``
torchscript               ``torch.jit.save``  ``torch``
pytorch                   ``torch.save``      None (a state dict needs its module's code)
safetensors               ``*.safetensors``   None
npz                       ``numpy.savez``     None
huggingface               ``config.json`` +   None
                          weights folder
xgboost                   ``*.json|*.ubj``    ``xgboost``
lightgbm                  model text file     ``lightgbm``
========================  ==================  ==================================
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from provenance.errors import CertificateError


@dataclass(frozen=True)
class ModelFormat:
    """A model file format: its recorded name, what people call it, the framework that writes
    it, and the runtime that serves it (None: weights only, see the module docstring)."""

    name: str
    title: str
    framework: str
    runtime: str | None


FORMATS: dict[str, ModelFormat] = {
    f.name: f
    for f in (
        ModelFormat("pickle", "scikit-learn pickle", "scikit-learn", "sklearn"),
        ModelFormat("joblib", "scikit-learn joblib file", "scikit-learn", "sklearn"),
        ModelFormat("onnx", "ONNX model", "onnx", "onnxruntime"),
        ModelFormat("torchscript", "TorchScript archive", "pytorch", "torch"),
        ModelFormat("pytorch", "PyTorch torch.save file", "pytorch", None),
        ModelFormat("safetensors", "safetensors weights", "safetensors", None),
        ModelFormat("npz", "numpy .npz archive", "numpy", None),
        ModelFormat("huggingface", "Hugging Face model folder", "transformers", None),
        ModelFormat("xgboost", "XGBoost model (JSON or UBJSON)", "xgboost", "xgboost"),
        ModelFormat("lightgbm", "LightGBM model text file", "lightgbm", "lightgbm"),
    )
}
"""Every supported format by its recorded name."""

LEGACY_NAMES = {"pickle-5": "pickle"}
"""Names earlier certificates recorded (``track()``'s scikit-learn capture: ``pickle-5``)."""

SUPPORTED = ", ".join(f.title for f in FORMATS.values())
"""The supported formats, for error messages."""

MAX_ZIP_MEMBERS = 100_000
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own limit
MAX_CONFIG_BYTES = 1 << 20
_HEAD = 64

_TORCH_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")
"""The first bytes of a legacy (non-zip) ``torch.save`` file: pickle protocol 2, then the
magic number 0x1950a86a20f9469cfc6c as a pickled long."""

_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x04\x22\x4d\x18", b"x\x01", b"x^")
_COMPRESSED += (b"x\x9c", b"x\xda")
"""The magic bytes of the compressed files joblib writes (gzip, bz2, xz, lz4, zlib)."""

HF_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5", ".onnx")


class UnsupportedModelFormat(CertificateError):
    """The files are in none of the :data:`FORMATS` (the message names them)."""


@dataclass(frozen=True)
class Detected:
    """What :func:`detect_format` found: the format, and the file a runtime loads, as a POSIX
    path relative to the model (``"."`` for a folder format such as huggingface; the file's
    own name for a single-file model)."""

    format: ModelFormat
    entry: str


def format_named(name: str | None) -> ModelFormat | None:
    """The format a certificate records (earlier names mapped), or None when it records none
    or one this version does not know (``"files"``: a model captured without detection)."""
    if name is None:
        return None
    return FORMATS.get(LEGACY_NAMES.get(name, name))


def pickle_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is: ``"pickle"`` (protocol 2 or later, which is
    what pickle, joblib and scikit-learn write), ``"compressed"`` (joblib's ``compress=``), or
    None."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(_COMPRESSED):
        return "compressed"
    return None


def _head(path: Path, size: int = _HEAD) -> bytes:
    with path.open("rb") as f:
        return f.read(size)


def _zip_names(path: Path) -> list[str] | None:
    """The member names of a zip file (its central directory only), None when it is not one
    or has more than :data:`MAX_ZIP_MEMBERS` members."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    if len(infos) > MAX_ZIP_MEMBERS:
        return None
    return [i.filename for i in infos]


def _torch_zip(names: list[str]) -> str | None:
    """``torchscript`` or ``pytorch`` when the zip's members are a PyTorch archive (one top
    folder holding ``data.pkl``; TorchScript adds ``constants.pkl`` and ``code/``)."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1:
        return None
    top = tops.pop()
    members = {n.removeprefix(top + "/") for n in names}
    if "data.pkl" not in members:
        return None
    if "constants.pkl" in members and any(m.startswith("code/") for m in members):
        return "torchscript"
    return "pytorch"


def _safetensors(path: Path, head: bytes) -> bool:
    if len(head) < 10:
        return False
    (size,) = struct.unpack("<Q", head[:8])
    if not 2 <= size <= MAX_SAFETENSORS_HEADER or head[8:9] != b"{":
        return False
    try:
        if path.stat().st_size < 8 + size:
            return False
        with path.open("rb") as f:
            f.seek(8)
            header = json.loads(f.read(size))
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(header, dict):
        return False
    return all(
        isinstance(v, dict) and {"dtype", "shape", "data_offsets"} <= v.keys()
        for k, v in header.items()
        if k != "__metadata__"
    )


def _xgboost(path: Path, head: bytes) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return head.lstrip().startswith(b"{") and b'"learner"' in head
    if suffix == ".ubj":
        return head.startswith(b"{") and b"learner" in head[:32]
    return False


def _onnx(path: Path, head: bytes) -> bool:
    # a ModelProto starts with one of its fields' tags (ir_version: field 1, varint, is first
    # in what onnx writes); there is no magic number, so the suffix must say it too
    return path.suffix.lower() == ".onnx" and head[:1] in (b"\x08", b"\x12", b"\x1a", b"\x3a")


def detect_file(path: Path) -> ModelFormat | None:
    """The format of one file, or None (reads a bounded header; never loads the file)."""
    try:
        head = _head(path)
    except OSError:
        return None
    if head.startswith(_TORCH_MAGIC):
        return FORMATS["pytorch"]
    kind = pickle_kind(head)
    if kind == "pickle":
        return FORMATS["joblib" if path.suffix.lower() == ".joblib" else "pickle"]
    if kind == "compressed":
        return FORMATS["joblib"]
    if head.startswith(b"PK\x03\x04"):
        names = _zip_names(path)
        if names is None:
            return None
        torch_kind = _torch_zip(names)
        if torch_kind is not None:
            return FORMATS[torch_kind]
        if names and all(n.endswith(".npy") for n in names):
            return FORMATS["npz"]
        return None
    if _safetensors(path, head):
        return FORMATS["safetensors"]
    if _onnx(path, head):
        return FORMATS["onnx"]
    if _xgboost(path, head):
        return FORMATS["xgboost"]
    if head.startswith(b"tree\nversion=v"):
        return FORMATS["lightgbm"]
    return None


def _huggingface(folder: Path, files: Iterable[PurePosixPath]) -> bool:
    config = folder / "config.json"
    if not config.is_file() or config.stat().st_size > MAX_CONFIG_BYTES:
        return False
    try:
        value = json.loads(config.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(value, dict) or not ({"model_type", "architectures"} & value.keys()):
        return False
    return any(p.suffix.lower() in HF_WEIGHTS for p in files)


def detect_format(path: Path, files: Iterable[str] | None = None) -> Detected:
    """The format of the model at ``path``: one file, or a folder (a Hugging Face folder, or
    a folder whose one recognised model file is the entry). ``files``: the folder's files as
    relative POSIX paths, when the caller has them (a manifest's); else the folder is listed.
    UnsupportedModelFormat names the supported formats."""
    if path.is_file():
        found = detect_file(path)
        if found is None:
            raise UnsupportedModelFormat(
                f"{path.name} is not in a supported model format; supported: {SUPPORTED}"
            )
        return Detected(found, path.name)
    if not path.is_dir():
        raise UnsupportedModelFormat(f"{path} is not a model file or folder")
    listed = (
        [PurePosixPath(f) for f in files]
        if files is not None
        else sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file())
    )
    posix = [PurePosixPath(p.as_posix()) for p in listed]
    if _huggingface(path, posix):
        return Detected(FORMATS["huggingface"], ".")
    found = [(p, f) for p in posix if (f := detect_file(path.joinpath(*p.parts))) is not None]
    if len(found) == 1:
        return Detected(found[0][1], str(found[0][0]))
    if not found:
        raise UnsupportedModelFormat(
            f"no file in {path} is in a supported model format; supported: {SUPPORTED}"
        )
    names = ", ".join(str(p) for p, _ in found[:5])
    raise UnsupportedModelFormat(
        f"{path} holds several model files ({names}): give the one to serve, or a Hugging "
        "Face folder (config.json with its weights)"
    )


__all__ = [
    "FORMATS",
    "SUPPORTED",
    "Detected",
    "ModelFormat",
    "UnsupportedModelFormat",
    "detect_file",
    "detect_format",
    "format_named",
    "pickle_kind",
]
