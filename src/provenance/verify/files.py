"""Model files as a target: re-hashed, looked up on chain by model digest, or compared with the
``certificate.json`` beside them (where ``provenance.track`` writes it)."""

from __future__ import annotations

from pathlib import Path

from provenance.certificate import Certificate, SignedCertificate, parse_certificate
from provenance.errors import CertificateError, ConfigError, IntegrityError
from provenance.manifest import FileManifest, manifest_of, verify_manifest
from provenance.verify.report import CheckName, Checks

CERTIFICATE_FILE = "certificate.json"
"""The signed certificate ``provenance.track`` writes beside the model (its output_dir)."""


def sibling_certificate(path: Path) -> tuple[Path, Certificate | SignedCertificate] | None:
    """``certificate.json`` beside model files."""
    folder = path.parent if path.is_file() else path
    for candidate in (folder / CERTIFICATE_FILE, folder.parent / CERTIFICATE_FILE):
        if candidate.is_file():
            try:
                return candidate, parse_certificate(candidate.read_bytes(), str(candidate))
            except (CertificateError, OSError):
                continue
    return None


def hash_check(c: Checks, path: Path) -> FileManifest | None:
    """The files' manifest (None, with a failed ``model-files`` check, when unreadable)."""
    try:
        return manifest_of(path)
    except (IntegrityError, OSError) as exc:
        c.fail(CheckName.MODEL_FILES, f"cannot hash {path}: {exc}", IntegrityError)
        return None


def unregistered_check(
    c: Checks,
    path: Path,
    manifest: FileManifest,
    sibling: tuple[Path, Certificate | SignedCertificate] | None,
) -> None:
    """No registered model has the files' digest: say what they are."""
    digest = manifest.root
    if sibling is None:
        c.fail(
            CheckName.MODEL_FILES,
            f"no registered model has the digest {digest} of these {len(manifest.files)} "
            f"file(s) (and there is no {CERTIFICATE_FILE} beside them to compare with)",
            IntegrityError,
        )
        return
    cert_path, document = sibling
    body = document.certificate if isinstance(document, SignedCertificate) else document
    try:
        # the files were just hashed: only entries hashed another way are read again
        verify_manifest(body.model.manifest, path, hashed=manifest)
    except IntegrityError as exc:
        c.fail(
            CheckName.MODEL_FILES, f"not the certified model of {cert_path}: {exc}", IntegrityError
        )
    else:
        c.fail(
            CheckName.MODEL_FILES,
            f"the files match {cert_path} ({digest}), but no registered model has that digest",
            IntegrityError,
        )


def oms_check(c: Checks, path: Path, certified: FileManifest, keys: tuple[bytes, ...]) -> None:
    """An OMS bundle beside the model files (``<path>.sig``): signed by a trusted key
    (``keys``: the policy's, never the bundle's), over exactly the files as they are and exactly
    the ``certified`` files. No bundle: skipped; a bundle but no trusted key: a warning."""
    from provenance.export.oms import bundle_beside, verify_covers, verify_model_signature

    bundle = bundle_beside(path)
    if not bundle.is_file():
        c.skip(CheckName.OMS_SIGNATURE, f"no OMS bundle beside the files ({bundle.name})")
        return
    if not keys:
        c.warn(
            CheckName.OMS_SIGNATURE,
            f"{bundle} is not checked: no OMS public key is trusted ([trust] oms_keys)",
        )
        return
    try:
        signed = verify_model_signature(path, bundle, keys)
        verify_covers(signed, certified, path, bundle)
    except (IntegrityError, ConfigError) as exc:
        c.fail(CheckName.OMS_SIGNATURE, str(exc), IntegrityError)
        return
    c.ok(
        CheckName.OMS_SIGNATURE,
        f"{bundle} (OMS v1.0) is signed by a trusted key (hint {signed.key_hint[:16]}) and "
        f"covers exactly the {len(certified.files)} certified file(s)",
    )


__all__ = [
    "CERTIFICATE_FILE",
    "hash_check",
    "oms_check",
    "sibling_certificate",
    "unregistered_check",
]
