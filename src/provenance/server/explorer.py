"""The registry explorer behind ``provenance explorer``: search models, read their birth
certificates, see their status, verification report, family tree and output attestations.

    app = create_explorer_app(registry, index, storage, attestor)   # FastAPI
    uvicorn.run(app, host="127.0.0.1", port=8600)

Pages (plain HTML, CSS and JavaScript from ``explorer_static/``, nothing fetched from elsewhere):
``/`` search, ``/models/0x<id>`` one model. JSON API, which the pages use:

- ``GET /api/search?q=`` by model id (or a prefix of it), model name (a substring),
  model digest, certificate digest or registrant address;
- ``GET /api/models/{id}`` the on-chain record, status, parents, children and a summary of the
  certificate (fetched from IPFS by the certificate digest on chain);
- ``GET /api/models/{id}/certificate`` the certificate body as stored;
- ``GET /api/models/{id}/tree?format=json|svg|dot|mermaid`` the family tree, coloured by status
  (the SVG nodes link to ``/models/0x<id>``);
- ``GET /api/models/{id}/attestations`` the OutputsAttested events and the authorised nodes;
- ``GET /api/models/{id}/verification`` the verification report (:mod:`provenance.verify`).

The lineage index is synced from the chain at most once a second, on demand; each server
thread reads it through its own SQLite connection (so the index must be a file).
Certificates are read only when the storage holds them (nothing is fetched from the network);
names and certificates are cached by certificate digest, which makes them immutable.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from provenance import lineage
from provenance.certificate import (
    MAX_BODY_SIZE,
    Certificate,
    body_of,
    parse_certificate,
    raw_block_cid,
)
from provenance.chain.index import IndexedModel, LineageIndex
from provenance.errors import ConfigError, ProvenanceError
from provenance.registration import as_bytes32

if TYPE_CHECKING:
    from provenance.chain.attestor import AttestorContract
    from provenance.chain.registry import Registry
    from provenance.storage.protocol import Storage
    from provenance.verify.policy import Policy

STATIC = Path(__file__).with_name("explorer_static")
MAX_RESULTS = 50


@dataclass(frozen=True)
class Fetched:
    """A certificate read from storage, or why it could not be."""

    certificate: Certificate | None
    cid: str
    error: str | None = None


class Explorer:
    """What the pages and the API read: the chain, the index, the storage."""

    def __init__(
        self,
        registry: Registry,
        index: LineageIndex,
        storage: Storage,
        attestor: AttestorContract | None = None,
        *,
        attestor_from_block: int = 0,
        trusted_registrants: Sequence[str] | None = None,
        policy: Policy | None = None,
        dot: str = "dot",
        sync_interval: float = 1.0,
    ) -> None:
        if not isinstance(index.path, Path):
            raise ConfigError("the explorer needs a lineage index in a file, not in memory")
        self.registry = registry
        self.index_path = index.path
        self.storage = storage
        self.attestor = attestor
        self.attestor_from_block = attestor_from_block
        self.trusted_registrants = trusted_registrants
        self.policy = policy
        self.dot = dot
        self.sync_interval = sync_interval
        self._local = threading.local()
        self._sync_lock = threading.Lock()
        self._synced_at = 0.0
        self._certificates: dict[bytes, Fetched] = {}

    # ------------------------------------------------------------------ plumbing
    def index(self) -> LineageIndex:
        """This thread's connection to the index, synced when the last sync is old."""
        found: LineageIndex | None = getattr(self._local, "index", None)
        if found is None:
            found = LineageIndex(self.index_path)
            self._local.index = found
        with self._sync_lock:
            if time.monotonic() - self._synced_at >= self.sync_interval:
                found.sync(self.registry)
                self._synced_at = time.monotonic()
        return found

    def model(self, model_id: str) -> tuple[bytes, IndexedModel, LineageIndex]:
        try:
            mid = as_bytes32(model_id, "model id")
        except ProvenanceError as exc:
            raise HTTPException(400, str(exc)) from None
        index = self.index()
        found = index.get(mid)
        if found is None:
            raise HTTPException(404, f"model 0x{mid.hex()} is not registered")
        return mid, found, index

    def fetch(self, indexed: IndexedModel) -> Fetched:
        digest = indexed.certificate_digest
        cached = self._certificates.get(digest)
        if cached is not None:
            return cached
        cid = raw_block_cid(digest)
        try:
            if not self.storage.has(cid):
                return Fetched(
                    None, cid, f"the certificate {cid} is not held by {self.storage.location}"
                )
            document = parse_certificate(
                self.storage.get_bytes(cid, max_size=MAX_BODY_SIZE), f"certificate {cid}"
            )
        except ProvenanceError as exc:
            return Fetched(None, cid, str(exc))
        fetched = Fetched(body_of(document), cid)
        self._certificates[digest] = fetched
        return fetched

    def name(self, index: LineageIndex, model_id: bytes) -> str | None:
        found = index.get(model_id)
        if found is None:
            return None
        certificate = self.fetch(found).certificate
        return None if certificate is None else certificate.model_name

    # ---------------------------------------------------------------------- API
    def search(self, query: str) -> list[dict[str, Any]]:
        q = query.strip()
        index = self.index()
        ids: list[bytes] = []
        text = q.lower()
        hexpart = text.removeprefix("sha256:").removeprefix("0x")
        is_hex = bool(hexpart) and all(c in "0123456789abcdef" for c in hexpart)
        if is_hex and len(hexpart) == 40 and text.startswith("0x"):
            ids += index.models_of(q)
        if is_hex and len(hexpart) == 64:
            raw = bytes.fromhex(hexpart)
            ids += [raw] if index.get(raw) is not None else []
            ids += index.by_model_digest(raw) + index.by_certificate(raw)
        if is_hex and len(hexpart) < 64 and not text.startswith("sha256:"):
            ids += [m for m in index.all_ids() if m.hex().startswith(hexpart)]
        if not ids and q:
            ids += [m for m in index.all_ids() if text in (self.name(index, m) or "").lower()]
        return [self.summary(index, m) for m in list(dict.fromkeys(ids))[:MAX_RESULTS]]

    def summary(self, index: LineageIndex, model_id: bytes) -> dict[str, Any]:
        found = index.require(model_id)
        return {
            "id": "0x" + model_id.hex(),
            "name": self.name(index, model_id),
            "status": lineage.node_status(index, model_id),
            "registrant": found.registrant,
            "block": found.block,
        }

    def details(self, model_id: str) -> dict[str, Any]:
        mid, found, index = self.model(model_id)
        record = self.registry.record(mid)
        fetched = self.fetch(found)

        def link(other: bytes, relation: str) -> dict[str, Any]:
            return {
                "id": "0x" + other.hex(),
                "relation": relation,
                "name": self.name(index, other),
                "status": lineage.node_status(index, other),
            }

        return {
            "id": "0x" + mid.hex(),
            "name": None if fetched.certificate is None else fetched.certificate.model_name,
            "status": lineage.node_status(index, mid),
            "on_chain_status": record.status.label,
            "tainted": index.is_tainted(mid),
            "revoked_ancestors": ["0x" + m.hex() for m in index.revoked_ancestors(mid)],
            "registrant": found.registrant,
            "registered_at": record.registered_at,
            "block": found.block,
            "transaction": found.transaction,
            "certificate_digest": "sha256:" + found.certificate_digest.hex(),
            "certificate_cid": fetched.cid,
            "model_digest": "sha256:" + found.model_digest.hex(),
            "data_commitment": "sha256:" + found.data_commitment.hex(),
            "revoked_parent_acknowledged": record.revoked_parent_acknowledged,
            "revoked_by": found.revoked_by,
            "revoke_reason": None
            if found.revoke_reason is None
            else "0x" + found.revoke_reason.hex(),
            "parents": [link(p.id, p.relation.label) for p in index.parents(mid)],
            "children": [link(c, r.label) for c, r in index.children(mid)],
            "certificate": None
            if fetched.certificate is None
            else certificate_summary(fetched.certificate),
            "certificate_error": fetched.error,
        }

    def certificate(self, model_id: str) -> dict[str, Any]:
        _, found, _ = self.model(model_id)
        fetched = self.fetch(found)
        if fetched.certificate is None:
            raise HTTPException(404, fetched.error or "no certificate")
        return fetched.certificate.model_dump(mode="json", exclude_none=True)

    def tree(self, model_id: str) -> lineage.FamilyTree:
        mid, _, index = self.model(model_id)
        family = lineage.build_family_tree(index, mid)
        names = {n.id: name for n in family.nodes if (name := self.name(index, n.id))}
        return family.with_names(names)

    def attestations(self, model_id: str) -> dict[str, Any]:
        mid, _, _ = self.model(model_id)
        if self.attestor is None:
            return {"attestor": None, "batches": [], "nodes": []}
        from provenance.chain.authorizations import authorized_nodes, output_attestations

        start = self.attestor_from_block
        return {
            "attestor": self.attestor.address,
            "batches": [
                a.to_json() for a in output_attestations(self.attestor, mid, from_block=start)
            ],
            "nodes": [
                n.to_json() for n in authorized_nodes(self.attestor, [mid], from_block=start)
            ],
        }

    def verification(self, model_id: str) -> dict[str, Any]:
        mid, _, _ = self.model(model_id)
        from provenance.verify.shortcuts import report_for_model
        from provenance.verify.verifier import Verifier

        # never fetches training data: a page view must not download datasets
        if self.policy is not None:
            policy = dataclasses.replace(self.policy, fetch_data=False)
            verifier = Verifier(policy, registry=self.registry, storage=self.storage)
            report = verifier.model(mid)
        else:
            report = report_for_model(
                mid,
                registry=self.registry,
                storage=self.storage,
                trusted_registrants=self.trusted_registrants,
                fetch_data=False,
            )
        result: dict[str, Any] = report.to_json()
        return result


def certificate_summary(certificate: Certificate) -> dict[str, Any]:
    """What the model page shows of a certificate (the whole body is at ``/certificate``)."""
    env = certificate.environment
    model = certificate.model
    return {
        "model_name": certificate.model_name,
        "created_at": certificate.created_at,
        "creator": certificate.creator,
        "parents": [p.model_dump(mode="json") for p in certificate.parents],
        "steps": [
            {
                "name": s.name,
                "source_digest": s.source_digest,
                "arguments": s.arguments,
                "libraries": s.libraries,
            }
            for s in certificate.preprocessing
        ],
        "training": {
            "command": list(certificate.training.command),
            "parameters": certificate.training.parameters,
            "metrics": certificate.training.metrics,
        },
        "data": {
            "commitment": certificate.data.commitment,
            "url": certificate.data.url,
            "datasets": [
                {
                    "name": d.name,
                    "role": d.role,
                    "commitment": d.commitment,
                    "confidential": d.confidential,
                    "kind": None if d.manifest is None else d.manifest.kind,
                    "subset": d.subset is not None,
                    "url": d.url,
                }
                for d in certificate.data.datasets
            ],
        },
        "environment": None
        if env is None
        else {
            "os": env.os,
            "python": f"{env.python.implementation} {env.python.version}",
            "cpu": f"{env.cpu.model or env.cpu.architecture} x{env.cpu.count}",
            "gpus": list(env.gpus),
            "packages": len(env.packages),
            "image_id": None if env.container is None else env.container.image_id,
        },
        "model": {
            "digest": model.digest,
            "format": model.format,
            "framework": None if model.framework is None else model.framework.model_dump(),
            "url": model.url,
            "files": [f.model_dump(mode="json", exclude_none=True) for f in model.manifest.files],
        },
        "source": None
        if certificate.source is None
        else certificate.source.model_dump(mode="json", exclude_none=True),
        "warnings": list(certificate.warnings),
    }


def _href(model_id: bytes) -> str:
    return f"/models/0x{model_id.hex()}"


def create_explorer_app(
    registry: Registry,
    index: LineageIndex,
    storage: Storage,
    attestor: AttestorContract | None = None,
    *,
    attestor_from_block: int = 0,
    trusted_registrants: Sequence[str] | None = None,
    policy: Policy | None = None,
    dot: str = "dot",
) -> FastAPI:
    """The explorer's FastAPI app over these clients (see the module docstring). With a
    ``policy`` (the ``explorer`` command passes the config's trust roots) the verification
    report is checked against it; else the registry client and ``trusted_registrants`` are
    trusted."""
    explorer = Explorer(
        registry,
        index,
        storage,
        attestor,
        attestor_from_block=attestor_from_block,
        trusted_registrants=trusted_registrants,
        policy=policy,
        dot=dot,
    )
    app = FastAPI(title="provenance explorer", docs_url="/api/docs", redoc_url=None)
    app.state.explorer = explorer
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ProvenanceError)
    def _failed(_: Any, exc: ProvenanceError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=502)

    @app.get("/", include_in_schema=False)
    def home() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/models/{model_id}", include_in_schema=False)
    def model_page(model_id: str) -> FileResponse:
        return FileResponse(STATIC / "model.html")

    @app.get("/api/search")
    def search(q: str = Query(min_length=1, max_length=200)) -> list[dict[str, Any]]:
        return explorer.search(q)

    @app.get("/api/models/{model_id}")
    def model(model_id: str) -> dict[str, Any]:
        return explorer.details(model_id)

    @app.get("/api/models/{model_id}/certificate")
    def certificate(model_id: str) -> dict[str, Any]:
        return explorer.certificate(model_id)

    @app.get("/api/models/{model_id}/tree")
    def tree(model_id: str, format: str = "json") -> Response:
        family = explorer.tree(model_id)
        if format == "json":
            return JSONResponse(family.to_json())
        if format == "svg":
            svg = lineage.render_svg(family, href=_href, dot=explorer.dot)
            return Response(lineage.svg_element(svg), media_type="image/svg+xml")
        if format == "dot":
            return PlainTextResponse(lineage.render_dot(family, href=_href))
        if format == "mermaid":
            return PlainTextResponse(lineage.render_mermaid(family))
        raise HTTPException(400, f"unknown format {format!r}; use json, svg, dot or mermaid")

    @app.get("/api/models/{model_id}/attestations")
    def attestations(model_id: str) -> dict[str, Any]:
        return explorer.attestations(model_id)

    @app.get("/api/models/{model_id}/verification")
    def verification(model_id: str) -> dict[str, Any]:
        return explorer.verification(model_id)

    return app


__all__ = ["Explorer", "certificate_summary", "create_explorer_app"]
