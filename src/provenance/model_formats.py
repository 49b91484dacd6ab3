"""Which format a model's files are in, told from their bytes (never by loading them).

:func:`detect_format` reads at most a bounded part of each file (a zip's central directory,
a safetensors header, an ONNX model's top-level field framing, a pickle's first bytes, a JSON
config): nothing is unpickled, imported or parsed by a framework, so it is safe on untrusted
files and runs before any digest check matters. The result names a :class:`ModelFormat` from
:data:`FORMATS` (recorded as ``certificate.model.format``) and the entry file inside the model
(what a runtime loads).

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

Limits on hostile files: a zip's central directory is sized from its end record before
``zipfile`` reads it (:data:`MAX_ZIP_MEMBERS`, :data:`MAX_ZIP_DIRECTORY`); a safetensors header
is at most :data:`MAX_SAFETENSORS_HEADER` bytes and, like ``config.json``
(:data:`MAX_CONFIG_BYTES`), decoded by :func:`provenance.untrusted.loads_json` (depth, size,
duplicate keys); an ONNX file's top level is walked field by field (at most
:data:`MAX_ONNX_FIELDS`) without decoding the graph; a folder is listed without following
links to folders, and at most :data:`MAX_FOLDER_FILES` files are looked at. Only regular files
(or links to them) are opened.

Hand-written: the zip end-record read (``zipfile`` builds every member's entry before one can
count them) and the ONNX framing walk (protobuf's readers decode the whole message).
"""

from __future__ import annotations

import bz2
import importlib.metadata
import lzma
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from provenance.errors import CertificateError
from provenance.untrusted import UntrustedInputError, loads_json, unsafe_path_reason


@dataclass(frozen=True)
class ModelFormat:
    """A model file format: its recorded name, what people call it, the framework that writes
    it, the runtime that serves it (None: weights only, see the module docstring), and the
    distributions whose installed version is recorded as the framework's (first found)."""

    name: str
    title: str
    framework: str
    runtime: str | None
    distributions: tuple[str, ...] = ()


FORMATS: dict[str, ModelFormat] = {
    f.name: f
    for f in (
        ModelFormat("pickle", "scikit-learn pickle", "scikit-learn", "sklearn", ("scikit-learn",)),
        ModelFormat(
            "joblib", "scikit-learn joblib file", "scikit-learn", "sklearn", ("scikit-learn",)
        ),
        ModelFormat("onnx", "ONNX model", "onnx", "onnxruntime", ("onnx",)),
        ModelFormat("torchscript", "TorchScript archive", "torch", "torch", ("torch",)),
        ModelFormat("pytorch", "PyTorch torch.save file", "torch", None, ("torch",)),
        ModelFormat("safetensors", "safetensors weights", "safetensors", None, ("safetensors",)),
        ModelFormat("npz", "numpy .npz archive", "numpy", None, ("numpy",)),
        ModelFormat(
            "huggingface", "Hugging Face model folder", "transformers", None, ("transformers",)
        ),
        ModelFormat(
            "xgboost",
            "XGBoost model (JSON or UBJSON)",
            "xgboost",
            "xgboost",
            ("xgboost", "xgboost-cpu"),
        ),
        ModelFormat("lightgbm", "LightGBM model text file", "lightgbm", "lightgbm", ("lightgbm",)),
    )
}
"""Every supported format by its recorded name."""

UNDETECTED = "files"
"""What a certificate records for a model in none of the formats (certifiable, not servable)."""

LEGACY_NAMES = {"pickle-5": "pickle"}
"""Names earlier certificates recorded (``track()``'s scikit-learn capture: ``pickle-5``)."""

SUPPORTED = ", ".join(f.title for f in FORMATS.values())
"""The supported formats, for error messages."""

MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_DIRECTORY = 32 << 20
"""Largest zip central directory read (bytes): room for MAX_ZIP_MEMBERS long names."""
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own limit
MAX_CONFIG_BYTES = 1 << 20
MAX_ONNX_FIELDS = 100_000
MAX_FOLDER_FILES = 100_000
_HEAD = 64

_TORCH_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")
"""The first bytes of a legacy (non-zip) ``torch.save`` file: pickle protocol 2, then the
magic number 0x1950a86a20f9469cfc6c as a pickled long."""

_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_COMPRESSED: tuple[bytes, ...] = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x5d\x00\x00")
_COMPRESSED += (_LZ4_MAGIC, b"x\x01", b"x^", b"x\x9c", b"x\xda")
"""The magic bytes of the compressed files joblib writes (gzip, bz2, xz, lzma, lz4, zlib)."""

HF_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5", ".onnx")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# ModelProto's fields and their protobuf wire types (0: varint, 2: length-delimited)
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_ONNX_REQUIRED = frozenset({1, 7, 8})  # ir_version, graph, opset_import


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


def framework_version(fmt: ModelFormat) -> str | None:
    """The installed version of the library that writes ``fmt`` (package metadata only; the
    library is not imported), or None when it is not installed."""
    for distribution in fmt.distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def pickle_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is: ``"pickle"`` (protocol 2 or later, which is
    what pickle, joblib and scikit-learn write), ``"compressed"`` (joblib's ``compress=``), or
    None."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(_COMPRESSED):
        return "compressed"
    return None


# -- reading bounded parts of files ------------------------------------------------------------


def _decompressed_head(head: bytes, data: bytes) -> bytes | None:
    """The first bytes ``data`` (a compressed file's start) decompresses to, None when the
    compression is unknown here (lz4) or the bytes do not decompress."""
    if head.startswith(b"\x1f\x8b"):
        inflate = zlib.decompressobj(wbits=31)
        return _first(lambda: inflate.decompress(data, 16))
    if head.startswith(b"BZh"):
        return _first(lambda: bz2.BZ2Decompressor().decompress(data, 16))
    if head.startswith((b"\xfd7zXZ\x00", b"\x5d\x00\x00")):
        return _first(lambda: lzma.LZMADecompressor().decompress(data, 16))
    if head.startswith(b"x"):
        inflate = zlib.decompressobj()
        return _first(lambda: inflate.decompress(data, 16))
    return None


def _first(call: Callable[[], bytes]) -> bytes | None:
    try:
        return call()
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError):
        return None


def _zip_directory(f: BinaryIO, size: int) -> tuple[int, int] | None:
    """A zip's member count and central directory size from its end record (zip64 too), or
    None when there is no end record."""
    tail_size = min(size, 22 + 0xFFFF)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    entries, directory_size, offset = struct.unpack("<HLL", tail[at + 10 : at + 20])
    if entries != 0xFFFF and directory_size != 0xFFFFFFFF and offset != 0xFFFFFFFF:
        return entries, directory_size
    locator = tail[at - 20 : at] if at >= 20 else b""
    if locator[:4] != b"PK\x06\x07":
        return None
    (record_at,) = struct.unpack("<Q", locator[8:16])
    if record_at > size - 56:
        return None
    f.seek(record_at)
    record = f.read(56)
    if record[:4] != b"PK\x06\x06":
        return None
    entries64, directory64 = struct.unpack("<QQ", record[32:48])
    return entries64, directory64


def _zip_names(path: Path, size: int) -> list[str] | None:
    """The member names of a zip file (its central directory only), None when it is not one,
    or has more than :data:`MAX_ZIP_MEMBERS` members or a larger directory than
    :data:`MAX_ZIP_DIRECTORY` (both read from the end record before ``zipfile`` reads it)."""
    try:
        with path.open("rb") as f:
            found = _zip_directory(f, size)
            if found is None:
                return None
            entries, directory_size = found
            if entries > MAX_ZIP_MEMBERS or directory_size > MAX_ZIP_DIRECTORY:
                return None
            with zipfile.ZipFile(f) as archive:
                infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return None
    except NotImplementedError:  # a zip version zipfile does not read (found by the fuzzer)
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


def _safetensors(path: Path, head: bytes, size: int) -> bool:
    """A safetensors file: an 8-byte header length, a JSON header of tensors (dtype, shape,
    data offsets), and exactly the data bytes the offsets cover (so a truncated file is not)."""
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    if not 2 <= length <= MAX_SAFETENSORS_HEADER or head[8:9] != b"{" or size < 8 + length:
        return False
    try:
        with path.open("rb") as f:
            f.seek(8)
            raw = f.read(length)
        header = loads_json(raw, what="safetensors header", max_bytes=MAX_SAFETENSORS_HEADER)
    except (OSError, UntrustedInputError):
        return False
    if not isinstance(header, dict):
        return False
    end = 0
    for key, tensor in header.items():
        if key == "__metadata__":
            if not isinstance(tensor, dict):
                return False
            continue
        if not isinstance(tensor, dict) or not {"dtype", "shape", "data_offsets"} <= tensor.keys():
            return False
        offsets = tensor["data_offsets"]
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            return False
        end = max(end, offsets[1])
    return bool(end == size - 8 - length)


def _xgboost(path: Path, head: bytes) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return head.lstrip().startswith(b"{") and b'"learner"' in head
    if suffix == ".ubj":
        return head.startswith(b"{") and b"learner" in head[:32]
    return False


def _varint(f: BinaryIO) -> int | None:
    value = 0
    for shift in range(0, 70, 7):
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None


def _onnx(path: Path, size: int) -> bool:
    """An ``.onnx`` file whose top level is a ModelProto: only ModelProto's fields, each with
    its wire type, every length inside the file, ending exactly at its end, with an IR version,
    a graph and an opset (ONNX has no magic number; random bytes fail within a few fields)."""
    if path.suffix.lower() != ".onnx" or size == 0:
        return False
    seen: set[int] = set()
    try:
        with path.open("rb") as f:
            for _ in range(MAX_ONNX_FIELDS):
                if f.tell() == size:
                    return seen >= _ONNX_REQUIRED
                tag = _varint(f)
                if tag is None or _ONNX_FIELDS.get(tag >> 3) != tag & 7:
                    return False
                value = _varint(f)
                if value is None:
                    return False
                if tag & 7 == 2:
                    if value > size - f.tell():
                        return False
                    f.seek(value, os.SEEK_CUR)
                seen.add(tag >> 3)
    except OSError:
        return False
    return False


# -- detection ---------------------------------------------------------------------------------


def detect_file(path: Path) -> ModelFormat | None:
    """The format of one file, or None (reads a bounded part; never loads the file). A path
    that is not a regular file (or a link to one) is None: FIFOs and devices are not opened."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return None
        with path.open("rb") as f:
            head = f.read(_HEAD)
    except OSError:
        return None
    size = info.st_size
    if head.startswith(_TORCH_MAGIC):
        return FORMATS["pytorch"]
    kind = pickle_kind(head)
    if kind == "pickle":
        return FORMATS["joblib" if path.suffix.lower() == ".joblib" else "pickle"]
    if kind == "compressed":
        return _compressed(path, head)
    if head.startswith(b"PK\x03\x04"):
        names = _zip_names(path, size)
        if names is None:
            return None
        torch_kind = _torch_zip(names)
        if torch_kind is not None:
            return FORMATS[torch_kind]
        if names and all(n.endswith(".npy") for n in names):
            return FORMATS["npz"]
        return None
    if _safetensors(path, head, size):
        return FORMATS["safetensors"]
    if _onnx(path, size):
        return FORMATS["onnx"]
    if _xgboost(path, head):
        return FORMATS["xgboost"]
    if head.startswith(b"tree\nversion=v"):
        return FORMATS["lightgbm"]
    return None


def _compressed(path: Path, head: bytes) -> ModelFormat | None:
    """A joblib file written with ``compress=``: its first compressed bytes decompress to a
    pickle's start (lz4, which the standard library cannot read, is taken by its name)."""
    if head.startswith(_LZ4_MAGIC):
        return FORMATS["joblib"] if ".joblib" in path.name.lower() else None
    try:
        with path.open("rb") as f:
            start = f.read(4096)
    except OSError:
        return None
    inner = _decompressed_head(head, start)
    if inner is None or pickle_kind(inner) != "pickle":
        return None
    return FORMATS["joblib"]


def _huggingface(folder: Path, files: Iterable[PurePosixPath]) -> bool:
    """A Hugging Face folder: a top-level ``config.json`` naming a model type or architectures,
    and weights (a file with a weights suffix whose content is safetensors, torch.save, ONNX
    or HDF5, or a Flax ``.msgpack``)."""
    config = folder / "config.json"
    try:
        info = config.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CONFIG_BYTES:
            return False
        with config.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        value = loads_json(raw, what="config.json", max_bytes=MAX_CONFIG_BYTES)
    except (OSError, UntrustedInputError):
        return False
    if not isinstance(value, dict) or not ({"model_type", "architectures"} & value.keys()):
        return False
    return any(_hf_weights(folder.joinpath(*p.parts)) for p in files if p.suffix in HF_WEIGHTS)


def _hf_weights(path: Path) -> bool:
    if path.suffix == ".msgpack":
        return path.is_file()
    if path.suffix == ".h5":
        try:
            if not stat.S_ISREG(path.stat().st_mode):
                return False
            with path.open("rb") as f:
                magic = f.read(8)
        except OSError:
            return False
        return magic == _HDF5_MAGIC
    found = detect_file(path)
    return found is not None and found.name in ("safetensors", "pytorch", "onnx")


def folder_files(folder: Path) -> list[PurePosixPath]:
    """The files under ``folder`` (regular files and links to them; links to folders are not
    followed), sorted; UnsupportedModelFormat past :data:`MAX_FOLDER_FILES`."""
    found: list[PurePosixPath] = []
    for top, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        base = PurePosixPath(Path(top).relative_to(folder).as_posix())
        for name in filenames:
            if stat.S_ISREG(_mode(Path(top, name))):
                found.append(base / name)
                if len(found) > MAX_FOLDER_FILES:
                    raise UnsupportedModelFormat(
                        f"{folder} holds more than {MAX_FOLDER_FILES} files"
                    )
    return sorted(found)


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode
    except OSError:
        return 0


def detect_format(path: Path, files: Iterable[str] | None = None) -> Detected:
    """The format of the model at ``path``: one file, or a folder (a Hugging Face folder, or
    a folder whose one recognised model file is the entry). ``files``: the folder's files as
    relative POSIX paths, when the caller has them (a manifest's); else the folder is listed
    (:func:`folder_files`). UnsupportedModelFormat names the supported formats."""
    if path.is_file():
        single = detect_file(path)
        if single is None:
            raise UnsupportedModelFormat(
                f"{path.name} is not in a supported model format; supported: {SUPPORTED}"
            )
        return Detected(single, path.name)
    if not path.is_dir():
        raise UnsupportedModelFormat(f"{path} is not a model file or folder")
    if files is None:
        posix = folder_files(path)
    else:
        posix = []
        for name in files:
            reason = unsafe_path_reason(name)
            if reason is not None:
                raise UnsupportedModelFormat(f"model file name {name!r} is unsafe: {reason}")
            posix.append(PurePosixPath(name))
            if len(posix) > MAX_FOLDER_FILES:
                raise UnsupportedModelFormat(f"{path} holds more than {MAX_FOLDER_FILES} files")
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
    "LEGACY_NAMES",
    "SUPPORTED",
    "UNDETECTED",
    "Detected",
    "ModelFormat",
    "UnsupportedModelFormat",
    "detect_file",
    "detect_format",
    "folder_files",
    "format_named",
    "framework_version",
    "pickle_kind",
]
