"""A model's files for serving: fetched from IPFS and checked against the certificate's
manifest before anything reads them, then loaded by the runtime of their format
(:func:`load_model`: scikit-learn pickles and joblib files, ONNX, TorchScript, XGBoost,
LightGBM; the runtimes are the model images' own, :mod:`provenance.image_entrypoint`).

Loading runs the file's code (unpickling, a TorchScript module) or feeds it to a native
parser: :func:`fetch_verified` puts only files with the certified digests in place, and the
service loads only a trusted registrant's model
(:func:`provenance.server.service.check_trusted_registrant`) before calling
:func:`load_model`. Weights without their code (a PyTorch state dict, safetensors, numpy
``.npz``, a Hugging Face folder) are refused: they are served from an image of their own.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from provenance import image_entrypoint
from provenance.errors import CertificateError, ConfigError, IntegrityError, ServiceError
from provenance.image_entrypoint import Runtime, SklearnRuntime
from provenance.manifest import verify_manifest
from provenance.model_formats import (
    FORMATS,
    SUPPORTED,
    ModelFormat,
    UnsupportedModelFormat,
    detect_format,
    format_named,
    pickle_kind,
)

METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
"""The estimator methods a request may call; a served model has at least one."""


def load_pickled_model(path: Path, what: str, *, joblib_installed: bool | None = None) -> Any:
    """Unpickle the model file at ``path`` (a pickle, or a joblib file: a pickle with numpy
    arrays, possibly compressed), which the caller has checked against the certificate's
    digest. With joblib installed it loads both; without (``joblib_installed``: default, look),
    a plain pickle loads and a joblib file is refused (ConfigError, one line). CertificateError
    for a file that is neither, or that does not unpickle to something with one of
    :data:`METHODS`."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ServiceError(f"cannot read the model file {path}: {exc}") from exc
    kind = pickle_kind(head)
    if kind is None:
        raise CertificateError(
            f"{what}: its file {path.name} is not a pickle or joblib file; serving from files "
            "supports one pickled (or joblib) scikit-learn model: serve it from its image instead"
        )
    if joblib_installed is None:
        joblib_installed = importlib.util.find_spec("joblib") is not None
    if not joblib_installed and (kind == "compressed" or path.suffix.lower() == ".joblib"):
        raise ConfigError(
            f"{what}: {path.name} is a joblib file; install joblib (scikit-learn brings it) "
            "to serve it"
        )
    try:
        if joblib_installed:
            import joblib  # type: ignore[import-untyped]

            estimator = joblib.load(path)
        else:
            import pickle

            with path.open("rb") as f:
                estimator = pickle.load(f)
    except ImportError as exc:  # a class from a package this environment lacks
        raise ConfigError(f"{what}: unpickling {path.name} needs {exc}") from exc
    except Exception as exc:  # unpickling runs the file's own code: any error is possible
        raise CertificateError(f"{what}: {path.name} does not unpickle: {exc}") from exc
    if not any(callable(getattr(estimator, m, None)) for m in METHODS):
        raise CertificateError(
            f"{what}: {path.name} holds a {type(estimator).__qualname__}, which has none of "
            f"the methods {', '.join(METHODS)}"
        )
    return estimator


WEIGHTS_ONLY = (
    "serve it from an image of your own (provenance image build --dockerfile) or behind "
    "provenance proxy"
)


def served_format(recorded: str | None, what: str) -> ModelFormat | None:
    """The format a certificate records, None when it records none (None, or ``"files"``:
    captured before formats were detected; the files then say). CertificateError, naming the
    supported formats, for a name this version does not know."""
    if recorded is None or recorded == "files":
        return None
    found = format_named(recorded)
    if found is None:
        raise UnsupportedModelFormat(
            f"{what}: its certificate records the format {recorded!r}, which this version does "
            f"not know; supported: {SUPPORTED}"
        )
    return found


def model_entry(
    root: Path, recorded: str | None, files: list[str], what: str
) -> tuple[ModelFormat, Path]:
    """The format of the verified model at ``root`` (a file, or the folder of its files) and
    the file its runtime loads: told from the files' bytes (bounded headers, nothing loaded),
    and checked against what the certificate records. CertificateError when they disagree or
    the files are in no supported format."""
    expected = served_format(recorded, what)
    try:
        detected = detect_format(root, files if root.is_dir() else None)
    except UnsupportedModelFormat as exc:
        if expected is None or len(files) != 1:
            raise UnsupportedModelFormat(f"{what}: {exc}") from exc
        entry = root if root.is_file() else root / files[0]  # the one file, as recorded
        return expected, entry
    found = detected.format
    if expected is not None and expected.runtime != found.runtime:
        raise CertificateError(
            f"{what}: its certificate records the {expected.name} format, but its files are "
            f"in the {found.name} format ({found.title}); refusing to load them"
        )
    fmt = expected or found
    entry = root if root.is_file() else root.joinpath(*detected.entry.split("/"))
    return fmt, entry


def check_runnable(fmt: ModelFormat, what: str) -> None:
    """CertificateError unless ``fmt`` has a runtime: weights alone (a state dict, safetensors,
    ``.npz``, a Hugging Face folder) need the code that runs them, which is not in the files."""
    if fmt.runtime is None:
        raise CertificateError(
            f"{what} is in the {fmt.name} format ({fmt.title}): weights without the code "
            "that runs them; " + WEIGHTS_ONLY
        )


def load_model(path: Path, format: str | ModelFormat, what: str) -> Runtime:
    """The model at ``path`` (its entry file, whose digest the caller has checked against the
    certificate), loaded by the runtime of ``format`` (a :class:`ModelFormat` or its recorded
    name). Refused in one line: a format without a runtime (weights only: CertificateError
    saying where to serve it), an unknown format (naming the supported ones), a runtime that
    is not installed (ConfigError), a file that does not load (CertificateError)."""
    fmt = format if isinstance(format, ModelFormat) else format_named(format)
    if fmt is None:
        raise UnsupportedModelFormat(
            f"{what}: cannot serve the format {format!r}; supported: {SUPPORTED}"
        )
    check_runnable(fmt, what)
    if fmt.runtime == "sklearn":
        return SklearnRuntime(load_pickled_model(path, what))
    try:
        return image_entrypoint.load_runtime(path, fmt.name)
    except image_entrypoint.MissingRuntime as exc:
        extra = _EXTRAS.get(fmt.name, fmt.name)
        raise ConfigError(f"{what}: {exc}; pip install 'provenance[{extra}]'") from exc
    except image_entrypoint.ModelLoadError as exc:
        raise CertificateError(f"{what}: {exc}") from exc


_EXTRAS = {"onnx": "onnx", "torchscript": "torch", "xgboost": "boost", "lightgbm": "boost"}
"""The extra of provenance that brings the library serving each format."""

SERVED = tuple(name for name, f in FORMATS.items() if f.runtime is not None)
"""The formats served from their files."""


_INCOMING = ".incoming-"


def fetch_verified(manifest: Any, cid: str, storage: Any, workdir: Path, target: Path) -> None:
    """Put the certified file (or folder of files: a model of several files, stored as their
    folder) at ``target``: what is already there is reused only when it holds exactly the
    manifest's files with their digests, and no symbolic link (else it is removed); otherwise
    it is fetched into a temporary folder in ``workdir``, verified there and only then moved
    into place. Leftovers of an interrupted fetch are removed, never trusted. Nothing is
    loaded before this returns."""
    try:
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for leftover in workdir.glob(_INCOMING + "*"):
            shutil.rmtree(leftover, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServiceError(f"cannot prepare the model folder {workdir}: {exc}") from exc
    if target.is_symlink() or target.exists():
        try:
            if _has_links(target) or not (target.is_file() or target.is_dir()):
                raise IntegrityError(f"{target} is not a regular file or folder")
            verify_manifest(manifest, target)
            return  # a verified file from an earlier start
        except IntegrityError:
            _remove(target)
    incoming = Path(tempfile.mkdtemp(prefix=_INCOMING, dir=workdir))
    try:
        fetched = incoming / target.name
        storage.get_path(cid, fetched)
        try:
            verify_manifest(manifest, fetched)  # before anything unpickles it
        except IntegrityError as exc:
            detail = str(exc).removeprefix(f"{fetched}: ")
            raise IntegrityError(f"{target}: {detail}") from exc
        os.replace(fetched, target)
    except OSError as exc:
        raise ServiceError(f"cannot put the model file at {target}: {exc}") from exc
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


def _has_links(path: Path) -> bool:
    """Whether ``path`` is, or a folder holds, a symbolic link (a link verifies as its target,
    which may change after the check: never reused)."""
    if path.is_symlink():
        return True
    if not path.is_dir():
        return False
    for folder, dirnames, filenames in os.walk(path, followlinks=False):
        if any((Path(folder) / name).is_symlink() for name in [*dirnames, *filenames]):
            return True
    return False


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise ServiceError(f"cannot remove the unverified {path}: {exc}") from exc


__all__ = [
    "METHODS",
    "SERVED",
    "WEIGHTS_ONLY",
    "check_runnable",
    "fetch_verified",
    "load_model",
    "load_pickled_model",
    "model_entry",
    "pickle_kind",
    "served_format",
]
