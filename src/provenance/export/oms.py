"""OpenSSF model signing (OMS v1.0): sign a model's files, verify a signature, and check that
a signature covers exactly a certificate's model files.

An OMS signature is a Sigstore bundle (JSON) holding a DSSE envelope around an in-toto
Statement whose predicate lists every file of the model with its SHA-256. It is made and
checked by the ``model_signing`` library's own signing and verifying configurations, with an
ECDSA P-256/P-384 key (:mod:`provenance.export.signing_keys`): our Ethereum keys are secp256k1,
which OMS does not take. Trust comes from the public keys the caller passes (the verifier's
``[trust] oms_keys``), never from the bundle: its key hint only picks among them.

    bundle = sign_model(Path("model"), key)              # the bundle's bytes
    write_bundle(Path("model"), key)                      # model.sig beside the folder
    signed = verify_model_signature(Path("model"), Path("model.sig"), [public_pem])
    verify_covers(signed, certificate.model.manifest, Path("model"))
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from provenance.errors import ConfigError, IntegrityError
from provenance.export.signing_keys import CURVE_NAMES
from provenance.manifest.files import FileManifest, verify_manifest
from provenance.untrusted import UntrustedInputError, loads_json

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from provenance.export.subject import Subject

BUNDLE_SUFFIX = ".sig"
"""A model's OMS bundle sits beside it as ``<model>.sig`` (``model/`` -> ``model.sig``,
``model.pkl`` -> ``model.pkl.sig``), outside the files it signs."""

PREDICATE_TYPE = "https://model_signing/signature/v1.0"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_BUNDLE_BYTES = 32 << 20
"""The largest bundle read (one line per file: ~150 bytes, so about 200,000 files)."""
MAX_PAYLOAD_BYTES = 24 << 20
_ALGORITHMS: dict[str, Literal["sha256", "blake2", "blake3"]] = {
    "sha256": "sha256",
    "blake2": "blake2",
    "blake3": "blake3",
}


@dataclass(frozen=True)
class OmsManifest:
    """What an OMS bundle signs: the model's name, the serialization (``method`` "files" or
    "shards", ``hash_type``), and each resource's name and hex digest. A single-file model's
    one resource is named ``"."`` by model_signing. ``key_hint``: the SHA-256 of the signer's
    public key PEM (empty in older bundles)."""

    model_name: str
    method: str
    hash_type: str
    resources: tuple[tuple[str, str], ...]
    key_hint: str
    ignore_paths: tuple[str, ...] = ()

    @property
    def files(self) -> dict[str, str]:
        return dict(self.resources)


def bundle_beside(model: Path) -> Path:
    """Where a model's OMS bundle goes by default: ``<model>.sig`` beside it."""
    return model.parent / (model.name + BUNDLE_SUFFIX)


def key_hint(public_pem: bytes) -> str:
    """The key hint model_signing writes: the SHA-256 of the public key's PEM (SPKI)."""
    return hashlib.sha256(public_pem).hexdigest()


def load_public_key(path: Path) -> bytes:
    """The PEM (SubjectPublicKeyInfo) of the P-256/P-384 public key in ``path`` (a public
    key, or a certificate's ``.pub`` file); ConfigError when it is not one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read OMS public key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"OMS public key {path} is not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVE_NAMES:
        raise ConfigError(f"OMS public key {path} is not an ECDSA P-256 or P-384 key")
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- signing ----------------------------------------------------------------------------------


def sign_model(model: Path, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The OMS bundle (Sigstore bundle JSON) signing the files of ``model`` (a file or a folder)
    with ``key``, made by model_signing's elliptic-key signer with SHA-256 file serialization
    (its defaults: git files ``.git/``, ``.gitattributes``, ``.github/``, ``.gitignore`` are not
    signed, and symbolic links are refused)."""
    from cryptography.hazmat.primitives import serialization
    from model_signing import hashing, signing

    if not model.exists():
        raise ConfigError(f"{model} does not exist")
    password = secrets.token_hex(16).encode()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="provenance-oms-") as tmp:
        key_path = Path(tmp) / "key.pem"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        out = Path(tmp) / "bundle.sig"
        file_hashing = hashing.Config()  # type: ignore[no-untyped-call]
        config = (
            signing.Config()  # type: ignore[no-untyped-call]
            # 1.1.1 annotates the password as str, but hands it to cryptography, which needs bytes
            .use_elliptic_key_signer(private_key=key_path, password=password)  # type: ignore[arg-type]
            .set_hashing_config(file_hashing.use_file_serialization(hashing_algorithm="sha256"))
        )
        try:
            config.sign(model, out)
        except ValueError as exc:  # a symbolic link, an unsupported key
            raise IntegrityError(f"cannot sign {model} in OMS format: {exc}") from exc
        return out.read_bytes()


def write_bundle(
    model: Path,
    key: ec.EllipticCurvePrivateKey,
    output: Path | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Sign ``model`` and write its bundle to ``output`` (default :func:`bundle_beside`), never
    inside a model folder (it would sign itself next time) and never over a file unless
    ``overwrite``. Written under a temporary name and renamed."""
    target = output if output is not None else bundle_beside(model)
    if model.is_dir() and target.resolve().is_relative_to(model.resolve()):
        raise ConfigError(f"the OMS bundle {target} would be inside the model folder {model}")
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} already exists; use --force to replace it")
    bundle = sign_model(model, key)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(bundle)
    partial.replace(target)
    return target


def export(
    subject: Subject, *, signing_key: ec.EllipticCurvePrivateKey | None = None, **_: Any
) -> bytes:
    """``provenance export --format oms``: the OMS bundle of the certificate's model files
    (``--model-files``, checked against the certificate's manifest first), signed with
    ``--signing-key``."""
    if subject.model_files is None:
        raise ConfigError("the oms format signs the model's files: give --model-files")
    if signing_key is None:
        raise ConfigError("the oms format is signed: give --signing-key (a P-256/P-384 key)")
    verify_manifest(subject.certificate.model.manifest, subject.model_files)
    return sign_model(subject.model_files, signing_key)


# -- reading and verifying --------------------------------------------------------------------


def read_bundle(path: Path) -> bytes:
    """The bytes of a bundle file, at most :data:`MAX_BUNDLE_BYTES`."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BUNDLE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"OMS bundle {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read OMS bundle {path}: {exc.strerror}") from exc
    if len(raw) > MAX_BUNDLE_BYTES:
        raise IntegrityError(f"OMS bundle {path} is larger than {MAX_BUNDLE_BYTES} bytes")
    return raw


def parse_bundle(raw: bytes, what: str = "OMS bundle") -> OmsManifest:
    """What a bundle claims to sign, decoded with limits and NOT verified: use it for the key
    hint, or after :func:`verify_model_signature`. IntegrityError for anything that is not an
    OMS v1.0 bundle of a DSSE envelope."""

    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"{what} is not an OMS v1.0 signature: {why}")

    try:
        bundle = loads_json(raw, what=what, max_bytes=MAX_BUNDLE_BYTES)
    except UntrustedInputError as exc:
        raise IntegrityError(str(exc)) from None
    if not isinstance(bundle, dict):
        raise bad("not a JSON object")
    envelope = bundle.get("dsseEnvelope")
    material = bundle.get("verificationMaterial")
    if not isinstance(envelope, dict) or not isinstance(material, dict):
        raise bad("no DSSE envelope and verification material (a Sigstore bundle has both)")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise bad(f"the payload type is {envelope.get('payloadType')!r}, not {PAYLOAD_TYPE}")
    public_key = material.get("publicKey")
    hint = public_key.get("hint", "") if isinstance(public_key, dict) else ""
    if not isinstance(hint, str):
        raise bad("the key hint is not a string")
    payload = envelope.get("payload")
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_BYTES * 4 // 3 + 4:
        raise bad("the payload is missing or too large")
    try:
        statement = loads_json(base64.b64decode(payload, validate=True), what=f"{what} payload")
    except (binascii.Error, UntrustedInputError) as exc:
        raise bad(f"the payload is not base64 JSON ({exc})") from None
    if not isinstance(statement, dict) or statement.get("predicateType") != PREDICATE_TYPE:
        raise bad(f"the predicate type is not {PREDICATE_TYPE}")
    subjects = statement.get("subject")
    predicate = statement.get("predicate")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(predicate, dict):
        raise bad("the statement needs one subject and a predicate")
    serialization = predicate.get("serialization")
    resources = predicate.get("resources")
    if not isinstance(serialization, dict) or not isinstance(resources, list):
        raise bad("the predicate has no serialization or resources")
    files: list[tuple[str, str]] = []
    for item in resources:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("name", "digest", "algorithm")
        ):
            raise bad("a resource is not {name, digest, algorithm}")
        files.append((item["name"], item["digest"]))
    names = [n for n, _ in files]
    if len(set(names)) != len(names):
        raise bad("a resource is listed twice")
    name = subjects[0].get("name") if isinstance(subjects[0], dict) else None
    ignored = serialization.get("ignore_paths", [])
    if not isinstance(ignored, list) or not all(isinstance(p, str) for p in ignored):
        raise bad("ignore_paths is not a list of paths")
    return OmsManifest(
        model_name=name if isinstance(name, str) else "",
        method=str(serialization.get("method", "")),
        hash_type=str(serialization.get("hash_type", "")),
        resources=tuple(sorted(files)),
        key_hint=hint,
        ignore_paths=tuple(ignored),
    )


def verify_model_signature(
    model: Path, bundle: Path, public_keys: Sequence[bytes], *, raw: bytes | None = None
) -> OmsManifest:
    """Check that ``bundle`` is an OMS signature by one of ``public_keys`` (PEM) over exactly
    the files of ``model`` as they are now, with model_signing's own verifier; returns what it
    signs. IntegrityError, naming the first difference, otherwise. ``raw``: the bundle's bytes
    when already read (they are what is checked; the file is not read again)."""
    if not public_keys:
        raise ConfigError("no trusted OMS public key: give one (--public-key, [trust] oms_keys)")
    data = raw if raw is not None else read_bundle(bundle)
    signed = parse_bundle(data, f"OMS bundle {bundle}")
    candidates = [k for k in public_keys if key_hint(k) == signed.key_hint] or (
        [] if signed.key_hint else list(public_keys)
    )
    if not candidates:
        raise IntegrityError(
            f"OMS bundle {bundle} is signed by a key that is not trusted "
            f"(key hint {signed.key_hint[:16]})"
        )
    if not model.exists():
        raise ConfigError(f"{model} does not exist")
    failure: IntegrityError | None = None
    with tempfile.TemporaryDirectory(prefix="provenance-oms-") as tmp:
        copy = Path(tmp) / "bundle.sig"
        copy.write_bytes(data)
        for number, pem in enumerate(candidates):
            key_path = Path(tmp) / f"key{number}.pub"
            key_path.write_bytes(pem)
            try:
                _model_signing_verify(model, copy, key_path)
            except _Mismatch:
                _raise_difference(model, bundle, signed)
            except IntegrityError as exc:
                failure = exc
                continue
            return signed
    assert failure is not None
    raise IntegrityError(f"OMS bundle {bundle}: {failure}")


class _Mismatch(Exception):
    """model_signing found the files differ from the signed manifest."""


def _model_signing_verify(model: Path, bundle: Path, public_key: Path) -> None:
    from cryptography.exceptions import InvalidSignature
    from model_signing import verifying

    config = verifying.Config().use_elliptic_key_verifier(  # type: ignore[no-untyped-call]
        public_key=public_key
    )
    try:
        # an older bundle without key hint makes it print a warning on stdout
        with contextlib.redirect_stdout(io.StringIO()):
            config.verify(model, bundle)
    except InvalidSignature:
        raise IntegrityError("the signature does not verify with the trusted key") from None
    except ValueError as exc:
        if str(exc).startswith("Signature mismatch"):
            raise _Mismatch from exc
        if str(exc).startswith("Key mismatch"):
            raise IntegrityError("it is signed by another key") from None
        raise IntegrityError(f"model_signing refuses it: {exc}") from exc
    except (KeyError, TypeError, AttributeError) as exc:  # a bundle it cannot decode
        raise IntegrityError(f"model_signing cannot read it: {exc!r}") from exc


def _raise_difference(model: Path, bundle: Path, signed: OmsManifest) -> None:
    """The first difference between the files of ``model`` and the (validly signed) manifest,
    as IntegrityError; the files are hashed as model_signing hashes them."""
    from model_signing import hashing

    algorithm = _ALGORITHMS.get(signed.hash_type)
    if signed.method != "files" or algorithm is None:
        raise IntegrityError(f"{model}: the files differ from the OMS bundle {bundle}")
    config = hashing.Config().set_ignored_paths(  # type: ignore[no-untyped-call]
        paths=signed.ignore_paths
    )
    found = config.use_file_serialization(hashing_algorithm=algorithm).hash(model)
    actual = {str(rd.identifier): rd.digest.digest_hex for rd in found.resource_descriptors()}
    expected = signed.files
    label = model.name if model.is_file() else None
    for name in sorted(set(expected) | set(actual)):
        shown = label if name == "." and label else name
        if name not in actual:
            raise IntegrityError(
                f"{model}: {shown} is signed in the OMS bundle {bundle} but missing"
            )
        if name not in expected:
            raise IntegrityError(f"{model}: {shown} is not covered by the OMS bundle {bundle}")
        if actual[name] != expected[name]:
            raise IntegrityError(
                f"{model}: {shown} differs from the OMS bundle {bundle} (signed "
                f"{signed.hash_type}:{expected[name]}, found {signed.hash_type}:{actual[name]})"
            )
    raise IntegrityError(f"{model}: the files differ from the OMS bundle {bundle}")


def verify_covers(signed: OmsManifest, certified: FileManifest, model: Path, bundle: Path) -> None:
    """Check that a verified OMS manifest covers exactly the certified model files: the same
    paths, the same SHA-256 digests. A certified file over the shard size has a shard-list
    digest, not a plain SHA-256: it is compared through the files on disk, which the signature
    was checked against (so the caller must also check them against ``certified``)."""
    if signed.method != "files" or signed.hash_type != "sha256":
        raise IntegrityError(
            f"the OMS bundle {bundle} hashes by {signed.method} with {signed.hash_type}; only "
            "sha256 file serialization can be compared with a certificate"
        )
    files = signed.files
    if model.is_file() and set(files) == {"."}:
        files = {model.name: files["."]}
    certified_files = {f.path: f for f in certified.files}
    for path in sorted(set(certified_files) | set(files)):
        if path not in files:
            raise IntegrityError(
                f"the OMS bundle {bundle} does not cover the certified file {path}"
            )
        if path not in certified_files:
            raise IntegrityError(
                f"the OMS bundle {bundle} signs {path}, which is not a certified model file"
            )
        entry = certified_files[path]
        if entry.shard_size is None and entry.digest != f"sha256:{files[path]}":
            raise IntegrityError(
                f"the OMS bundle {bundle} signs {path} as sha256:{files[path]}, the certificate "
                f"says {entry.digest}"
            )


__all__ = [
    "BUNDLE_SUFFIX",
    "OmsManifest",
    "bundle_beside",
    "export",
    "key_hint",
    "load_public_key",
    "parse_bundle",
    "read_bundle",
    "sign_model",
    "verify_covers",
    "verify_model_signature",
    "write_bundle",
]
