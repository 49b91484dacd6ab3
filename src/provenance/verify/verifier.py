"""One verifier for every target: a model id, model files, a certificate file, an output
receipt, a Docker image, or whatever a command-line argument names.

    verifier = Verifier(policy, registry=registry, storage=kubo, engine=engine)
    verifier.model(model_id)              # a Report
    verifier.receipt("out.receipt.json", output=b"...")
    verifier.target("runs/alpha/model.pkl")

The trust roots are the :class:`~provenance.verify.policy.Policy`'s: the registry must be the
policy's ModelRegistry and the RPC must serve its chain (ConfigError otherwise), receipts are
checked on the policy's OutputAttestor only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from eth_utils.address import to_checksum_address

from provenance.attest import Receipt
from provenance.certificate import (
    Certificate,
    SignedCertificate,
    body_of,
    parse_certificate,
)
from provenance.chain.types import Status
from provenance.errors import CertificateError, ConfigError, IntegrityError
from provenance.untrusted import MAX_JSON_BYTES, UntrustedInputError, loads_json
from provenance.verify.certificate import envelope_signature_check
from provenance.verify.context import Context, RegistryView
from provenance.verify.files import (
    hash_check,
    oms_check,
    sibling_certificate,
    unregistered_check,
)
from provenance.verify.image import bound_image_checks, image_content_checks, image_label_checks
from provenance.verify.lineage import lineage_checks
from provenance.verify.policy import Policy
from provenance.verify.receipt import (
    chain_checks,
    offline_check,
    revoked_after_anchoring,
    trust_checks,
)
from provenance.verify.registration import (
    Anchor,
    _derived_id,
    anchor_of,
    certificate_model_id,
    find_models,
    model_checks,
    revocation,
    status_check,
)
from provenance.verify.report import Check, CheckName, Checks, CheckStatus, Report, subject_of

if TYPE_CHECKING:
    from provenance.chain.attestor import AttestorContract
    from provenance.chain.index import LineageIndex
    from provenance.images import DockerEngine
    from provenance.storage.protocol import Storage

T = TypeVar("T")

_ID = re.compile(r"(?:0x|sha256:)?([0-9a-fA-F]{64})")


def as_id(text: str) -> bytes | None:
    """32 bytes from ``0x`` + 64 hex digits (or ``sha256:<hex>``, or bare hex); None when the
    text is not one."""
    match = _ID.fullmatch(text.strip())
    return None if match is None else bytes.fromhex(match.group(1))


def _looks_like(data: Any, *keys: str) -> bool:
    return isinstance(data, dict) and all(k in data for k in keys)


JSON_START = b"{"
"""A receipt, a /predict answer or a certificate is a JSON object: a file that starts
otherwise (after whitespace) is never read as one."""


def json_document(path: Path) -> Any:
    """The JSON object in the file at ``path`` whatever its name (``curl -o answer`` has no
    suffix), or None: not a regular file, not starting with ``{``, larger than JSON may be, or
    not valid JSON (then the file is looked at as model files). Reads at most 64 bytes of a file
    that does not start like a JSON object."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as f:
            if not f.read(64).lstrip(b" \t\r\n").startswith(JSON_START):
                return None
            f.seek(0)
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_JSON_BYTES:
        return None
    with contextlib.suppress(UntrustedInputError, UnicodeDecodeError):
        return loads_json(raw, what=str(path))
    return None


def document_kind(data: Any) -> Literal["receipt", "pending", "certificate"] | None:
    """What a JSON document is: an output receipt or a ``/predict`` answer of ``provenance
    serve`` (``receipt``), the 202 answer of its ``/receipts/N`` while the batch waits
    (``pending``), a certificate (a signed envelope or a body), or none of these."""
    if _looks_like(data, "record", "batch", "proof") or _looks_like(data, "predictions", "receipt"):
        return "receipt"
    if _looks_like(data, "status", "sequence") and data["status"] == "pending":
        return "pending"
    if _looks_like(data, "certificate", "signature") or _looks_like(
        data, "version", "model", "data"
    ):
        return "certificate"
    return None


def _pick(
    candidates: list[bytes], build: Callable[[bytes], tuple[list[Check], T]]
) -> tuple[bytes, list[Check], T, Check | None]:
    """With several registrations of the same content: the first that verifies (else the
    first registered), and a check line naming them all."""
    built = [(m, *build(m)) for m in candidates]
    chosen = next((b for b in built if not any(c.failed for c in b[1])), built[0])
    note = None
    if len(candidates) > 1:
        others = ", ".join(f"0x{m.hex()}" for m in candidates if m != chosen[0])
        note = Check(
            CheckName.LOOKUP,
            CheckStatus.WARN,
            f"{len(candidates)} registrations match; reporting 0x{chosen[0].hex()} "
            f"(the first that verifies, else the first registered); also: {others}",
            subject_of(chosen[0]),
            False,
        )
    return chosen[0], chosen[1], chosen[2], note


def read_receipt_file(path: Path, max_bytes: int) -> Any:
    """The JSON of a receipt file (or of a ``/predict`` answer), bounded before it is decoded:
    ConfigError with one line for a missing, unreadable, oversized or malformed file."""
    try:
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(f"receipt {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read receipt {path}: {exc}") from exc
    if len(raw) > max_bytes:
        raise ConfigError(f"receipt {path} is larger than {max_bytes} bytes")
    return loads_json(raw, what=f"receipt {path}", max_bytes=max_bytes, error=ConfigError)


class Verifier:
    """Reports against ``policy``: ``registry`` is read for the chain's facts, ``storage`` for
    certificates and data, ``engine`` for images, ``attestor`` (default: the policy's, on the
    registry's chain connection) for receipts, ``index`` to look models up by digest.

    With neither ``registry`` nor ``storage`` it checks receipts offline (nothing on chain)."""

    def __init__(
        self,
        policy: Policy,
        *,
        registry: RegistryView | None,
        storage: Storage | None,
        engine: DockerEngine | None = None,
        attestor: AttestorContract | None = None,
        index: LineageIndex | None = None,
    ) -> None:
        self.policy = policy
        self.registry = registry
        self.storage = storage
        self.engine = engine
        self.index = index
        w3 = getattr(registry, "w3", None)
        if registry is not None:
            if w3 is not None and policy.chain_id is not None:
                served = int(w3.eth.chain_id)
                if served != policy.chain_id:
                    raise ConfigError(
                        f"the RPC serves chain {served}, the trusted chain is {policy.chain_id}"
                    )
            if policy.registry is None:
                raise ConfigError("no trusted ModelRegistry: the policy names none")
            if to_checksum_address(registry.address) != policy.registry:
                raise ConfigError(
                    f"the registry client reads {registry.address}, the trusted ModelRegistry "
                    f"is {policy.registry}"
                )
        if attestor is not None and to_checksum_address(attestor.address) != policy.attestor:
            raise ConfigError(
                f"the OutputAttestor client reads {attestor.address}, the trusted one is "
                f"{policy.attestor}"
            )
        if attestor is None and policy.attestor is not None and w3 is not None:
            from provenance.chain.attestor import AttestorContract

            attestor = AttestorContract(w3, policy.attestor)
        self.attestor = attestor

    # -- plumbing -------------------------------------------------------------------------

    def _ctx(self) -> Context:
        if self.registry is None or self.storage is None:
            raise ConfigError("this check needs the chain and IPFS; the verifier has neither")
        return Context(self.policy, self.registry, self.storage, self.index)

    def _full(
        self, model_id: bytes, envelope: SignedCertificate | None = None, *, signature: bool = True
    ) -> tuple[list[Check], Anchor | None, Certificate | None]:
        ctx = self._ctx()
        checks, anchor, body = model_checks(model_id, ctx, envelope=envelope, signature=signature)
        if anchor is not None:
            checks.extend(lineage_checks(model_id, ctx))
        return checks, anchor, body

    def _with_image(self, checks: list[Check], anchor: Anchor | None) -> list[Check]:
        """``checks`` and the checks of the image bound to the model on chain (if any; model
        files inside it read when the verifier has a Docker engine)."""
        if anchor is None:
            return checks
        c = Checks(subject_of(anchor.id))
        bound_image_checks(c, anchor, self.engine, self._ctx())
        return [*checks, *c.items]

    # -- reports --------------------------------------------------------------------------

    def model(self, model_id: bytes, *, envelope: SignedCertificate | None = None) -> Report:
        """Every check of a registered model: its anchoring, its certificate from IPFS, creator
        and registrant, training data, its ancestry, and the image bound to it."""
        checks, anchor, _ = self._full(model_id, envelope)
        checks = self._with_image(checks, anchor)
        return Report(f"0x{model_id.hex()}", "model-id", model_id, tuple(checks))

    def lineage(self, model_id: bytes) -> Report:
        """The model's own registration and status, and the lineage checks (taint, ancestors)."""
        ctx = self._ctx()
        c = Checks(subject_of(model_id))
        anchor = anchor_of(ctx.registry, model_id)
        if anchor is None:
            c.fail(
                CheckName.REGISTERED,
                f"model 0x{model_id.hex()} is not registered in the registry "
                f"{ctx.registry.address}",
                IntegrityError,
            )
        else:
            c.ok(
                CheckName.REGISTERED,
                f"registered by {anchor.registrant} in block {anchor.block}",
            )
            status_check(c, anchor, ctx)
            c.items.extend(lineage_checks(model_id, ctx))
        return Report(f"0x{model_id.hex()}", "model-id", model_id, tuple(c.items))

    def files(self, path: Path, target: str | None = None) -> Report:
        """Model files (a file or a folder): re-hashed and looked up on chain by model digest."""
        ctx = self._ctx()
        target = target or str(path)
        c = Checks(str(path))
        manifest = hash_check(c, path)
        if manifest is None:
            return Report(target, "model-files", None, tuple(c.items))
        sibling = sibling_certificate(path)
        envelope = sibling[1] if sibling and isinstance(sibling[1], SignedCertificate) else None
        digest = bytes.fromhex(manifest.root[7:])
        candidates = find_models(ctx.registry, model_digest=digest, index=ctx.index)
        if candidates:
            c.ok(
                CheckName.MODEL_FILES,
                f"{len(manifest.files)} file(s) hash to {manifest.root}, a registered model digest",
            )
            # the files are the registered model's (their root is its digest): the bundle must
            # cover exactly them
            oms_check(c, path, manifest, self.policy.oms_keys)

            def build(m: bytes) -> tuple[list[Check], None]:
                anchor = anchor_of(ctx.registry, m)
                env = None
                if envelope is not None and anchor is not None:
                    registrant = anchor.registrant
                    if _derived_id(envelope.certificate, registrant) == m:
                        env = envelope
                return self._full(m, env)[0], None

            model_id, checks, _, note = _pick(candidates, build)
            items = [*c.items, *([note] if note else []), *checks]
            return Report(target, "model-files", model_id, tuple(items))
        unregistered_check(c, path, manifest, sibling)
        if sibling is None:
            return Report(target, "model-files", None, tuple(c.items))
        derived = certificate_model_id(body_of(sibling[1]), ctx)
        if derived is None:  # the id binds its registrant: no creator and no registration
            return Report(target, "model-files", None, tuple(c.items))
        checks, _, _ = self._full(derived, envelope)
        return Report(target, "model-files", derived, tuple([*c.items, *checks]))

    def certificate(
        self, path: Path, document: Certificate | SignedCertificate | None = None
    ) -> Report:
        """A certificate file (a signed envelope or a bare body): its signature, and the model
        it derives checked on chain."""
        target = str(path)
        c = Checks(str(path))
        if document is None:
            try:
                document = parse_certificate(path.read_bytes(), f"certificate {path}")
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc}") from exc
            except CertificateError as exc:
                c.fail(CheckName.CERTIFICATE_FILE, str(exc), CertificateError)
                return Report(target, "certificate", None, tuple(c.items))
        body = body_of(document)
        envelope = document if isinstance(document, SignedCertificate) else None
        model_id = certificate_model_id(body, self._ctx())
        c.ok(
            CheckName.CERTIFICATE_FILE,
            f"schema v1 certificate {body.digest_text} of {body.model_name!r}, model id "
            + ("none (no creator)" if model_id is None else f"0x{model_id.hex()}")
            + (", signed" if envelope else ", unsigned"),
        )
        if envelope is None:
            c.skip(CheckName.SIGNATURE, "the certificate file is unsigned (a bare body)")
        else:
            envelope_signature_check(c, envelope)
        if model_id is None:
            c.fail(
                CheckName.REGISTERED,
                f"the certificate names no creator and no registration of {body.digest_text} "
                f"is in the registry {self._ctx().registry.address}",
                IntegrityError,
            )
            return Report(target, "certificate", None, tuple(c.items))
        checks, _, _ = self._full(model_id, envelope, signature=False)
        return Report(target, "certificate", model_id, tuple([*c.items, *checks]))

    def receipt(
        self,
        path_or_receipt: Path | str | Receipt | Mapping[str, Any],
        input: bytes | None = None,
        output: bytes | None = None,
        *,
        target: str | None = None,
        require_output: bool = False,
        input_digest: bytes | None = None,
        output_digest: bytes | None = None,
        model_id: bytes | None = None,
    ) -> Report:
        """An output receipt (a file, its JSON, a :class:`Receipt`, or a ``/predict`` answer of
        ``provenance serve`` whose predictions are then the output checked): see
        :mod:`provenance.verify.receipt`; then the model's own checks. The chain is read only
        on the policy's chain, attestor and registry. ``target`` names it in the report (default:
        the file, or "receipt"). ``input_digest`` / ``output_digest``: SHA-256 digests to check
        instead of the bytes; ``model_id``: the model the receipt must be for.

        A bare receipt shows that *some* output was attested, not which: with
        ``require_output``, a receipt checked without its output (or its digest) fails
        ``receipt-output`` (last, after every other check)."""
        target, receipt, output = self._load_receipt(path_or_receipt, output, target)
        expected = {"input_digest": input_digest, "output_digest": output_digest}
        report = self._receipt(
            path_or_receipt, target, receipt, input, output, model_id=model_id, **expected
        )
        if (
            not require_output
            or output is not None
            or output_digest is not None
            or isinstance(receipt, str)
        ):
            return report
        c = Checks(report.checks[0].subject if report.checks else target)
        c.fail(
            CheckName.RECEIPT_OUTPUT,
            "no output was checked: the receipt alone shows that some output was attested, not "
            "which; give the output (--output FILE, or the /predict answer, which carries its "
            "predictions), or --receipt-only to check the receipt alone",
            ConfigError,
        )
        return Report(report.target, report.kind, report.model_id, (*report.checks, *c.items))

    def _receipt(
        self,
        path_or_receipt: Path | str | Receipt | Mapping[str, Any],
        target: str,
        receipt: Receipt | str,
        input: bytes | None,
        output: bytes | None,
        **expected: bytes | None,
    ) -> Report:
        c = Checks(target if not isinstance(path_or_receipt, Receipt) else "receipt")
        if isinstance(receipt, str):
            c.fail(CheckName.RECEIPT, receipt, IntegrityError)
            return Report(target, "receipt", None, tuple(c.items))
        model_id = receipt.record.model_id
        offline_check(c, receipt, input, output, **expected)
        if self.registry is None and self.storage is None:
            trust_checks(c, receipt, self.policy)
            c.skip(CheckName.RECEIPT_ANCHORED, "not checked (offline)")
            return Report(target, "receipt", model_id, tuple(c.items))
        facts = chain_checks(c, receipt, self.policy, self.registry, self.attestor)
        checks, anchor, _ = self._full(model_id)
        anchored = facts.get("anchored_in")
        if anchor is not None and anchor.status is Status.REVOKED and anchored is not None:
            assert self.registry is not None
            _, revoked_in = revocation(self.registry, anchor)
            revoked_after_anchoring(checks, revoked_in, int(anchored["block"]))
        return Report(target, "receipt", model_id, tuple([*c.items, *checks]))

    def _load_receipt(
        self,
        source: Path | str | Receipt | Mapping[str, Any],
        output: bytes | None,
        target: str | None,
    ) -> tuple[str, Receipt | str, bytes | None]:
        """(target, the receipt or why it is not one, the output to check)."""
        if isinstance(source, Receipt):
            return target or "receipt", source, output
        if isinstance(source, Mapping):
            data: Any = dict(source)
            target = target or "receipt"
        else:
            target = target or str(source)
            data = read_receipt_file(Path(source), self.policy.max_receipt_bytes)
        if _looks_like(data, "predictions", "receipt"):
            if data["receipt"] is None:
                raise ConfigError(
                    f"{target} is an answer without a receipt: ask with ?wait=true, or fetch "
                    "its receipt_url once anchored"
                )
            if output is None:
                import rfc8785

                output = rfc8785.dumps({"predictions": data["predictions"]})
            data = data["receipt"]
        if not isinstance(data, dict):
            return target, "not a valid output receipt: not a JSON object", output
        try:
            return target, Receipt.from_json(data), output
        except IntegrityError as exc:
            return target, str(exc), output

    def image(self, ref: str, target: str | None = None) -> Report:
        """A Docker image of the engine (tag or id)."""
        if self.engine is None:
            raise ConfigError(f"to check {ref!r} as a Docker image a Docker engine is needed")
        ctx = self._ctx()
        target = target or ref
        c = Checks(f"image {ref}")
        labelled = image_label_checks(c, ref, self.engine)
        if labelled is None:
            return Report(target, "image", None, tuple(c.items))
        found, label, certificate_label = labelled
        if certificate_label:
            candidates = find_models(
                ctx.registry,
                certificate_digest=bytes.fromhex(certificate_label[7:]),
                index=ctx.index,
            )
        else:
            candidates = find_models(
                ctx.registry, model_digest=bytes.fromhex(label[7:]), index=ctx.index
            )
        if not candidates:
            by = (
                f"certificate {certificate_label}" if certificate_label else f"model digest {label}"
            )
            c.fail(
                CheckName.REGISTERED, f"no registered model has the image's {by}", IntegrityError
            )
            return Report(target, "image", None, tuple(c.items))

        def build(m: bytes) -> tuple[list[Check], int]:
            # the image's checks belong to the pick: with several registrations of one model
            # digest, the one whose certificate or binding names this image is the one reported
            checks, anchor, body = self._full(m)
            image = Checks(f"image {ref}")
            image_content_checks(image, found, label, certificate_label, anchor, body, engine, ctx)
            return [*image.items, *checks], len(image.items)

        engine = self.engine
        model_id, checks, n, note = _pick(candidates, build)
        items = [*c.items, *checks[:n], *([note] if note else []), *checks[n:]]
        return Report(target, "image", model_id, tuple(items))

    def target(self, text: str) -> Report:
        """The report for whatever ``text`` names: a model id or certificate digest (``0x``
        and 64 hex digits, or ``sha256:<hex>``, which may also be an image id), a certificate
        file, an output receipt file or a ``/predict`` answer (JSON, recognised by content
        whatever the file's name, :func:`document_kind`), model files (a file or a directory),
        or a Docker image (a tag or id of the engine). ConfigError for an unusable target."""
        ctx = self._ctx()
        path = Path(text)
        raw = as_id(text)
        if raw is not None and not path.exists():
            if ctx.registry.status(raw) is Status.NONE:
                by_certificate = find_models(ctx.registry, certificate_digest=raw, index=ctx.index)
                if by_certificate:
                    raw = by_certificate[0]
                elif (
                    self.engine is not None
                    and not text.lower().startswith("0x")
                    and self.engine.has(text)
                ):
                    return self.image(text, text)  # sha256:<hex>: an image id
            checks, anchor, _ = self._full(raw)
            return Report(text, "model-id", raw, tuple(self._with_image(checks, anchor)))
        data = json_document(path)
        kind = document_kind(data)
        if kind == "pending":
            raise ConfigError(
                f"{text} is the answer of a receipt not anchored yet (status pending): fetch "
                "the receipt again once its batch is anchored"
            )
        if kind == "receipt":
            return self.receipt(path)
        if kind == "certificate":
            try:
                document = parse_certificate(data, f"certificate {path}")
            except CertificateError as exc:
                c = Checks(str(path))
                c.fail(CheckName.CERTIFICATE_FILE, str(exc), CertificateError)
                return Report(text, "certificate", None, tuple(c.items))
            return self.certificate(path, document)
        if path.exists():
            return self.files(path, text)
        if self.engine is None:
            raise ConfigError(
                f"{text!r} is not a model id, a file or a folder; to check it as a Docker "
                "image a Docker engine is needed"
            )
        return self.image(text, text)


__all__ = ["Verifier", "as_id", "document_kind", "json_document", "read_receipt_file"]
