"""A model's files for serving: fetched from IPFS and checked against the certificate's
manifest before anything reads them, then unpickled (a pickle, or a joblib file).

Unpickling runs the file's code: :func:`fetch_verified` puts only a file with the certified
digest in place, and the service loads only a trusted registrant's model
(:func:`provenance.server.service.check_trusted_registrant`) before calling
:func:`load_pickled_model`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from provenance.errors import CertificateError, ConfigError, IntegrityError, ServiceError
from provenance.manifest import verify_manifest

METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
"""The estimator methods a request may call; a served model has at least one."""

_COMPRESSED = (
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ\x00",
    b"\x04\x22\x4d\x18",
    b"x\x01",
    b"x^",
    b"x\x9c",
    b"x\xda",
)
"""The magic bytes of the compressed files joblib writes (gzip, bz2, xz, lz4, zlib)."""


def pickle_kind(head: bytes) -> Literal["pickle", "compressed"] | None:
    """What the first bytes of a file say it is: a pickle (protocol 2 or later, which is what
    pickle, joblib and scikit-learn write), a compressed file (joblib's ``compress=``), or
    neither (None)."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(_COMPRESSED):
        return "compressed"
    return None


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


_INCOMING = ".incoming-"


def fetch_verified(manifest: Any, cid: str, storage: Any, workdir: Path, target: Path) -> None:
    """Put the certified file at ``target``: a file already there is reused only when it has
    the manifest's digest (else removed); otherwise it is fetched into a temporary folder in
    ``workdir``, verified there and only then moved into place. Leftovers of an interrupted
    fetch are removed, never trusted. Nothing is unpickled before this returns."""
    try:
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for leftover in workdir.glob(_INCOMING + "*"):
            shutil.rmtree(leftover, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServiceError(f"cannot prepare the model folder {workdir}: {exc}") from exc
    if target.is_symlink() or target.exists():
        try:
            if target.is_symlink() or not target.is_file():
                raise IntegrityError(f"{target} is not a regular file")
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


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise ServiceError(f"cannot remove the unverified {path}: {exc}") from exc


__all__ = ["METHODS", "fetch_verified", "load_pickled_model", "pickle_kind"]
