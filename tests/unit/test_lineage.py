"""Family trees from a real (in-memory) LineageIndex, rendered in every format."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from provenance import lineage
from provenance.chain.index import LineageIndex
from provenance.chain.registry import RegistryEvent
from provenance.errors import ProvenanceError

R, C, OTHER, G = (bytes([i]) * 32 for i in (1, 2, 3, 4))
"""R: a revoked root; C: its fine-tune (tainted); OTHER: an active root; G: merge of C and OTHER
(the tainted grandchild of R)."""
ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
NAMES = {R: "Root", C: "Child", OTHER: "Other", G: 'Grand "child"'}
SVG = "{http://www.w3.org/2000/svg}"


def h(b: bytes) -> str:
    return "0x" + b.hex()


def event(name: str, block: int, **args: Any) -> RegistryEvent:
    return RegistryEvent(name, block, b"\x00" * 32, "0x" + "ee" * 32, 0, args)


def registered(model: bytes, block: int, parent: bytes = b"\x00" * 32, relation: int = 0) -> Any:
    return event(
        "ModelRegistered",
        block,
        id=model,
        registrant=ALICE,
        certificateDigest=model[::-1],
        modelDigest=model,
        dataCommitment=model,
        firstParent=parent,
        firstRelation=relation,
    )


@pytest.fixture
def index() -> Iterator[LineageIndex]:
    with LineageIndex(":memory:") as idx:
        for e in (
            registered(R, 1),
            registered(C, 2, R, 0),  # fine-tune
            registered(OTHER, 3),
            registered(G, 4, C, 4),  # merge
            event("ParentLinked", 4, child=G, parent=OTHER, relation=4),
            event("ModelRevoked", 5, id=R, revokedBy=ALICE, reasonDigest=b"\x09" * 32),
        ):
            idx._apply(e)
        yield idx


@pytest.fixture
def tree(index: LineageIndex) -> lineage.FamilyTree:
    return lineage.build_family_tree(index, G, names=NAMES)


def test_nodes_edges_and_statuses(tree: lineage.FamilyTree) -> None:
    assert [(n.id, n.status) for n in tree.nodes] == [
        (G, "tainted"),
        (C, "tainted"),
        (OTHER, "active"),
        (R, "revoked"),
    ]
    assert tree.node(R).registrant == ALICE and tree.node(R).block == 1
    assert tree.node(G).name == 'Grand "child"'
    assert [(e.parent, e.child, e.relation) for e in tree.edges] == [
        (C, G, "merge"),
        (OTHER, G, "merge"),
        (R, C, "fine-tune"),
    ]
    with pytest.raises(ProvenanceError) as info:
        tree.node(bytes(32))
    assert str(info.value) == f"model 0x{'00' * 32} is not in this family tree"


def test_json_keeps_the_nested_form_and_adds_the_graph(index: LineageIndex) -> None:
    doc = json.loads(lineage.render_json(lineage.build_family_tree(index, R)))
    assert doc["id"] == h(R) and doc["status"] == "revoked" and doc["parents"] == []
    assert doc["children"] == [
        {
            "id": h(C),
            "relation": "fine-tune",
            "status": "tainted",
            "children": [{"id": h(G), "relation": "merge", "status": "tainted", "children": []}],
        }
    ]
    assert doc["nodes"][0] == {
        "id": h(R),
        "name": None,
        "status": "revoked",
        "registrant": ALICE,
        "block": 1,
        "registered_at": None,
        "registered_at_utc": None,
    }
    assert doc["edges"] == [
        {"parent": h(R), "child": h(C), "relation": "fine-tune"},
        {"parent": h(C), "child": h(G), "relation": "merge"},
    ]


def test_text_is_a_rich_tree(tree: lineage.FamilyTree) -> None:
    console = Console(width=200, no_color=True, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(lineage.rich_tree(tree))
    assert console.export_text().splitlines() == [
        '0x0404040404040404… tainted Grand "child"',
        "├── ancestors",
        "│   ├── ← merge 0x0202020202020202… tainted Child",
        "│   │   └── ← fine-tune 0x0101010101010101… revoked Root",
        "│   └── ← merge 0x0303030303030303… active Other",
        "└── descendants",
    ]


def test_mermaid(tree: lineage.FamilyTree) -> None:
    assert lineage.render_mermaid(tree).splitlines() == [
        "flowchart TD",
        "    classDef active fill:#c8e6c9,stroke:#2e7d32,color:#000",
        "    classDef revoked fill:#ffcdd2,stroke:#c62828,color:#000",
        "    classDef tainted fill:#ffe0b2,stroke:#ef6c00,color:#000",
        "    classDef unknown fill:#e0e0e0,stroke:#757575,color:#000",
        "    classDef focus stroke:#0d47a1,stroke-width:4px",
        '    m0["0x0404040404040404…<br/>Grand #quot;child#quot;<br/>tainted"]:::tainted',
        '    m1["0x0202020202020202…<br/>Child<br/>tainted"]:::tainted',
        '    m2["0x0303030303030303…<br/>Other<br/>active"]:::active',
        '    m3["0x0101010101010101…<br/>Root<br/>revoked"]:::revoked',
        "    m1 -->|merge| m0",
        "    m2 -->|merge| m0",
        "    m3 -->|fine-tune| m1",
        "    class m0 focus",
    ]


def test_dot(tree: lineage.FamilyTree) -> None:
    lines = lineage.render_dot(tree, href=lambda m: f"/models/{h(m)}").splitlines()
    assert lines[0] == "digraph lineage {" and lines[-1] == "}"
    assert (
        f'    "{h(R)}" [id="model-{h(R)}", class="status-revoked",'
        f' label="0x0101010101010101…\\nRoot\\nrevoked", fillcolor="#ffcdd2", color="#c62828",'
        f' tooltip="Root (revoked) registered by {ALICE} in block 1", URL="/models/{h(R)}"];'
    ) in lines
    assert (
        f'    "{h(G)}" [id="model-{h(G)}", class="status-tainted focus",'
        f' label="0x0404040404040404…\\nGrand \\"child\\"\\ntainted", fillcolor="#ffe0b2",'
        f' color="#0d47a1", tooltip="Grand \\"child\\" (tainted) registered by {ALICE} in block 4",'
        f' URL="/models/{h(G)}", penwidth=4];'
    ) in lines
    assert (
        f'    "{h(OTHER)}" [id="model-{h(OTHER)}", class="status-active",'
        f' label="0x0303030303030303…\\nOther\\nactive", fillcolor="#c8e6c9", color="#2e7d32",'
        f' tooltip="Other (active) registered by {ALICE} in block 3", URL="/models/{h(OTHER)}"];'
    ) in lines
    assert (
        f'    "{h(R)}" -> "{h(C)}" [id="edge-{h(R)}-{h(C)}", label="fine-tune",'
        ' class="relation-fine-tune"];'
    ) in lines
    assert (
        f'    "{h(OTHER)}" -> "{h(G)}" [id="edge-{h(OTHER)}-{h(G)}", label="merge", class="relation-merge"];'
    ) in lines
    assert "URL=" not in lineage.render_dot(tree)


def nodes_of(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if "node" in g.get("class", "").split()]


def test_svg_has_one_coloured_node_per_model(tree: lineage.FamilyTree) -> None:
    svg = lineage.render_svg(tree, href=lambda m: f"/models/{h(m)}")
    nodes = nodes_of(svg)
    assert len(nodes) == 4
    for node in nodes:
        model = next(n for n in tree.nodes if node.get("id") == f"model-{n.hex}")
        assert f"status-{model.status}" in node.get("class", "").split()
        fills = {p.get("fill") for p in node.iter() if p.tag in (f"{SVG}path", f"{SVG}polygon")}
        assert fills == {lineage.FILL[model.status]}
        link = next(node.iter(f"{SVG}a"))
        assert link.get("{http://www.w3.org/1999/xlink}href") == f"/models/{model.hex}"
    edges = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if "edge" in g.get("class", "").split()]
    assert sorted(e.get("id", "") for e in edges) == sorted(
        f"edge-{h(e.parent)}-{h(e.child)}" for e in tree.edges
    )


def test_html_is_one_page_with_legend_and_inline_svg(tree: lineage.FamilyTree) -> None:
    page = lineage.render_html(tree)
    assert page.startswith("<!doctype html>")
    assert "<title>Family tree of Grand &quot;child&quot;</title>" in page
    for status in lineage.STATUSES:
        assert f'border-color:{lineage.STROKE[status]}">' in page
    assert "<?xml" not in page and "<link" not in page and "<script" not in page
    svg = page[page.index("<svg") : page.index("</svg>") + len("</svg>")]
    assert len(nodes_of(svg)) == 4


def test_render_dispatch_and_missing_dot(tree: lineage.FamilyTree) -> None:
    assert lineage.render(tree, "mermaid") == lineage.render_mermaid(tree)
    with pytest.raises(ProvenanceError) as info:
        lineage.render(tree, "png")
    assert (
        str(info.value) == "unknown format 'png'; use one of: text, json, mermaid, dot, html, svg"
    )
    with pytest.raises(ProvenanceError) as info:
        lineage.render_svg(tree, dot="no-such-dot-program")
    assert str(info.value) == (
        "rendering SVG needs Graphviz's `no-such-dot-program` program, which is not on PATH "
        "(Debian: apt-get install graphviz; scripts/setup.sh installs it)"
    )


def test_unknown_parent(index: LineageIndex) -> None:
    ghost = b"\x0a" * 32
    index._apply(event("ParentLinked", 6, child=OTHER, parent=ghost, relation=7))
    family = lineage.build_family_tree(index, OTHER)
    assert [(n.id, n.status, n.registrant) for n in family.nodes] == [
        (OTHER, "active", ALICE),
        (ghost, "unknown", None),
        (G, "tainted", ALICE),
    ]
    assert "classDef unknown fill:#e0e0e0,stroke:#757575" in lineage.render_mermaid(family)


def test_impact_lists_descendants_with_paths(index: LineageIndex) -> None:
    found = lineage.impact(index, R)
    assert [(a.id, a.status, a.revoked, len(a.path)) for a in found] == [
        (C, "tainted", False, 1),
        (G, "tainted", False, 2),
    ]
    assert found[1].to_json() == {
        "id": h(G),
        "status": "tainted",
        "already_revoked": False,
        "depth": 2,
        "path": [
            {"parent": h(R), "child": h(C), "relation": "fine-tune"},
            {"parent": h(C), "child": h(G), "relation": "merge"},
        ],
    }
    assert lineage.impact(index, G) == ()


def test_lineage_is_pure() -> None:
    code = (
        "import sys, provenance.lineage; "
        "print(sorted(m for m in ('web3', 'httpx', 'docker') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- names from certificates and readable times (issue 15: `tree` printed "name": null) -----


class Blocks:
    """Blocks by CID, as storage holds them; ``held`` False: a gateway (holds nothing)."""

    def __init__(self, blocks: dict[str, bytes], *, held: bool = True) -> None:
        self.blocks, self.held, self.reads = blocks, held, 0

    def has(self, cid: str) -> bool:
        return self.held and cid in self.blocks

    def get_bytes(self, cid: str, *, max_size: int = 64 << 20) -> bytes:
        self.reads += 1
        if cid not in self.blocks:
            raise ProvenanceError(f"{cid} not found")
        data = self.blocks[cid]
        if len(data) > max_size:
            raise ProvenanceError("too large")
        return data


def _certificate(name: str) -> bytes:
    import datetime as dt

    from provenance.certificate import Certificate, ModelArtifact, TrainingData, timestamp
    from provenance.manifest import FileEntry, FileManifest

    model = FileManifest.of([FileEntry(path="m.bin", size=1, digest="sha256:" + "ab" * 32)])
    body = Certificate(
        model_name=name,
        created_at=timestamp(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        model=ModelArtifact(digest=model.root, manifest=model),
        data=TrainingData.of(()),
    )
    return body.canonical_bytes()


def test_names_come_from_the_certificates_and_missing_ones_stay_unknown() -> None:
    import hashlib

    from provenance.certificate import raw_block_cid

    alpha, beta = _certificate("Model Alpha"), _certificate("Model Beta")
    da, db = hashlib.sha256(alpha).digest(), hashlib.sha256(beta).digest()
    missing, garbage = b"\x07" * 32, b"not a certificate"
    dg = hashlib.sha256(garbage).digest()
    blocks = Blocks({raw_block_cid(da): alpha, raw_block_cid(db): beta, raw_block_cid(dg): garbage})
    digests = {R: da, C: db, OTHER: missing, G: dg, b"\x05" * 32: da}
    names = lineage.certificate_names(blocks, digests)
    assert names == {R: "Model Alpha", C: "Model Beta", b"\x05" * 32: "Model Alpha"}
    assert blocks.reads == 3  # alpha once, though two ids share it; nothing fetched that is missing
    gateway = Blocks(blocks.blocks, held=False)
    assert lineage.certificate_names(gateway, digests) == {}
    assert lineage.certificate_names(gateway, digests, fetch_missing=True) == names


def test_tree_certificate_digests_come_from_the_index(index: LineageIndex) -> None:
    assert lineage.tree_certificate_digests(index, [R, C, b"\x09" * 32]) == {
        R: R[::-1],
        C: C[::-1],
    }


def test_times_are_iso_8601_utc_beside_the_unix_time(tree: lineage.FamilyTree) -> None:
    assert lineage.utc_time(1764655200) == "2025-12-02T06:00:00Z"
    assert lineage.utc_time(None) is None
    assert lineage.utc_time(1 << 62) is None
    timed = tree.with_times({G: 1764655200})
    node = timed.to_json()["nodes"][0]
    assert (node["registered_at"], node["registered_at_utc"]) == (
        1764655200,
        "2025-12-02T06:00:00Z",
    )
    assert timed.node(C).registered_at is None
    console = Console(width=200, no_color=True, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(lineage.rich_tree(timed.with_names({OTHER: ""}), unknown_names=True))
    lines = console.export_text().splitlines()
    assert lines[0] == '0x0404040404040404… tainted Grand "child" 2025-12-02T06:00:00Z'
    assert lines[4] == "│   └── ← merge 0x0303030303030303… active (name unknown)"
