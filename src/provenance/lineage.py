"""Family trees: who a model descends from, what descends from it, and what is tainted.

A :class:`FamilyTree` is a value: the focus model, its ancestors and its descendants (each a
:class:`TreeNode` with a status), and the typed parent -> child edges between them. It is built
from anything shaped like :class:`~provenance.chain.index.LineageIndex` and rendered as text
(a Rich tree), JSON, Mermaid, Graphviz DOT, SVG (Graphviz's ``dot``) or one self-contained HTML
page::

    tree = build_family_tree(index, model_id, names={model_id: "Model Alpha"})
    print(render_mermaid(tree))
    Path("tree.html").write_text(render_html(tree))

Names come from the certificates (:func:`certificate_names`, read from storage by the digest
on chain; a certificate that cannot be read leaves the name unknown, never an error), times
from the chain (:meth:`FamilyTree.with_times`, Unix seconds, shown as ISO 8601 UTC).

Statuses: ``revoked`` (on chain), ``tainted`` (some ancestor is revoked), ``active``, and
``unknown`` (not in the source). Colours: active green, revoked red, tainted orange, unknown
grey; the focus model is outlined.

:func:`impact` answers "what is affected if this model is (or was) revoked": every descendant,
with the shortest chain of relations by which it is reached.

This module is pure: no web3, httpx or docker. Only :func:`render_svg` runs a program (``dot``).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from rich.tree import Tree

from provenance.chain.types import Status
from provenance.errors import ProvenanceError
from provenance.registration import Parent, Relation
from provenance.untrusted import printable

NodeStatus = Literal["active", "revoked", "tainted", "unknown"]
STATUSES: tuple[NodeStatus, ...] = ("active", "revoked", "tainted", "unknown")

STROKE: Mapping[NodeStatus, str] = {
    "active": "#2e7d32",
    "revoked": "#c62828",
    "tainted": "#ef6c00",
    "unknown": "#757575",
}
"""The status colours (borders, text): green, red, orange, grey."""
FILL: Mapping[NodeStatus, str] = {
    "active": "#c8e6c9",
    "revoked": "#ffcdd2",
    "tainted": "#ffe0b2",
    "unknown": "#e0e0e0",
}
"""The status fill colours (light green, red, orange, grey): what a node is painted with."""
FOCUS_STROKE = "#0d47a1"
"""The outline of the focus model."""
RICH_COLOUR: Mapping[NodeStatus, str] = {
    "active": "green",
    "revoked": "red",
    "tainted": "dark_orange",
    "unknown": "dim",
}

Href = Callable[[bytes], str]
"""Where a node links to (DOT ``URL``, SVG ``<a href>``), by model id."""


class IndexedLike(Protocol):
    """What the tree needs of an indexed model (see ``IndexedModel``)."""

    @property
    def registrant(self) -> str: ...
    @property
    def block(self) -> int: ...
    @property
    def status(self) -> Status: ...


class LineageSource(Protocol):
    """The queries a family tree is built from; :class:`LineageIndex` answers them."""

    def get(self, model_id: bytes) -> IndexedLike | None: ...
    def parents(self, model_id: bytes) -> list[Parent]: ...
    def children(self, model_id: bytes) -> list[tuple[bytes, Relation]]: ...
    def is_tainted(self, model_id: bytes) -> bool: ...


@dataclass(frozen=True)
class TreeNode:
    """One model of a family tree."""

    id: bytes
    status: NodeStatus
    name: str | None = None
    registrant: str | None = None
    block: int | None = None
    """The block the model was registered in."""
    registered_at: int | None = None
    """When it was registered (the block's Unix time), when known."""

    @property
    def hex(self) -> str:
        return "0x" + self.id.hex()

    @property
    def short(self) -> str:
        """``0x`` and the first 16 hex digits, then an ellipsis."""
        return self.hex[:18] + "\u2026"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.hex,
            "name": self.name,
            "status": self.status,
            "registrant": self.registrant,
            "block": self.block,
            "registered_at": self.registered_at,
            "registered_at_utc": utc_time(self.registered_at),
        }


@dataclass(frozen=True)
class TreeEdge:
    """``parent`` -> ``child``, derived by ``relation`` (``fine-tune``, ``merge``, ...)."""

    parent: bytes
    child: bytes
    relation: str

    def to_json(self) -> dict[str, str]:
        return {
            "parent": "0x" + self.parent.hex(),
            "child": "0x" + self.child.hex(),
            "relation": self.relation,
        }


@dataclass(frozen=True)
class FamilyTree:
    """A model (``focus``), all its ancestors and all its descendants, and the edges among
    them. ``nodes`` holds the focus first, then ancestors (nearest first), then descendants
    (nearest first)."""

    focus: bytes
    nodes: tuple[TreeNode, ...]
    edges: tuple[TreeEdge, ...]

    def node(self, model_id: bytes) -> TreeNode:
        for n in self.nodes:
            if n.id == model_id:
                return n
        raise ProvenanceError(f"model 0x{model_id.hex()} is not in this family tree")

    def parents_of(self, model_id: bytes) -> list[TreeEdge]:
        return [e for e in self.edges if e.child == model_id]

    def children_of(self, model_id: bytes) -> list[TreeEdge]:
        return [e for e in self.edges if e.parent == model_id]

    def with_names(self, names: Mapping[bytes, str]) -> FamilyTree:
        """The same tree with the names in ``names`` filled in."""
        return replace(
            self,
            nodes=tuple(replace(n, name=names.get(n.id, n.name)) for n in self.nodes),
        )

    def with_times(self, times: Mapping[bytes, int]) -> FamilyTree:
        """The same tree with the registration times (Unix seconds) in ``times`` filled in."""
        return replace(
            self,
            nodes=tuple(
                replace(n, registered_at=times.get(n.id, n.registered_at)) for n in self.nodes
            ),
        )

    def nested(self) -> dict[str, Any]:
        """The focus with its ancestors (``parents``, recursively) and descendants
        (``children``, recursively): a model reached by two paths appears under both."""
        status = {n.id: n.status for n in self.nodes}

        def up(m: bytes, seen: frozenset[bytes]) -> list[dict[str, Any]]:
            return [
                {
                    "id": "0x" + e.parent.hex(),
                    "relation": e.relation,
                    "status": status[e.parent],
                    "parents": up(e.parent, seen | {e.parent}),
                }
                for e in self.parents_of(m)
                if e.parent not in seen
            ]

        def down(m: bytes, seen: frozenset[bytes]) -> list[dict[str, Any]]:
            return [
                {
                    "id": "0x" + e.child.hex(),
                    "relation": e.relation,
                    "status": status[e.child],
                    "children": down(e.child, seen | {e.child}),
                }
                for e in self.children_of(m)
                if e.child not in seen
            ]

        start = frozenset({self.focus})
        return {
            "id": "0x" + self.focus.hex(),
            "status": status[self.focus],
            "parents": up(self.focus, start),
            "children": down(self.focus, start),
        }

    def to_json(self) -> dict[str, Any]:
        """:meth:`nested` plus the flat ``nodes`` and ``edges``."""
        return {
            **self.nested(),
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [e.to_json() for e in self.edges],
        }


def node_status(source: LineageSource, model_id: bytes) -> NodeStatus:
    found = source.get(model_id)
    if found is None:
        return "unknown"
    if found.status is Status.REVOKED:
        return "revoked"
    return "tainted" if source.is_tainted(model_id) else "active"


def build_family_tree(
    source: LineageSource, focus: bytes, *, names: Mapping[bytes, str] | None = None
) -> FamilyTree:
    """``focus``, every ancestor and every descendant, with statuses from ``source``."""
    order: list[bytes] = [focus]
    edges: dict[tuple[bytes, bytes], TreeEdge] = {}
    for direction in ("up", "down"):
        seen = {focus}
        queue = deque([focus])
        while queue:
            current = queue.popleft()
            if direction == "up":
                links = [(p.id, current, p.relation.label, p.id) for p in source.parents(current)]
            else:
                links = [(current, c, r.label, c) for c, r in source.children(current)]
            for parent, child, relation, other in links:
                edges.setdefault((parent, child), TreeEdge(parent, child, relation))
                if other not in seen:
                    seen.add(other)
                    order.append(other)
                    queue.append(other)
    nodes = []
    for model_id in order:
        found = source.get(model_id)
        nodes.append(
            TreeNode(
                id=model_id,
                status=node_status(source, model_id),
                name=(names or {}).get(model_id),
                registrant=None if found is None else found.registrant,
                block=None if found is None else found.block,
            )
        )
    return FamilyTree(focus=focus, nodes=tuple(nodes), edges=tuple(edges.values()))


def utc_time(timestamp: int | None) -> str | None:
    """A Unix time as ISO 8601 in UTC (``2026-12-02T06:00:00Z``); None stays None."""
    if timestamp is None:
        return None
    try:
        moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    except (OverflowError, OSError, ValueError):  # a time no calendar holds
        return None
    return moment.isoformat().replace("+00:00", "Z")


# -- names from certificates ------------------------------------------------------------------


class BlockSource(Protocol):
    """What reading a certificate needs of storage (:class:`provenance.storage.Storage`)."""

    def has(self, cid: str) -> bool: ...
    def get_bytes(self, cid: str, *, max_size: int = ...) -> bytes: ...


def stored_text(
    storage: BlockSource, digest: bytes, *, max_size: int, fetch_missing: bool = False
) -> bytes | None:
    """The bytes whose SHA-256 is ``digest`` (one raw block: its CID follows from the digest),
    or None when storage cannot give them: not held here (unless ``fetch_missing``, as for a
    gateway, which holds nothing and fetches within its timeout), larger than ``max_size``,
    or any storage error. Storage checks every block against its CID."""
    from provenance.certificate import raw_block_cid

    cid = raw_block_cid(digest)
    try:
        if not fetch_missing and not storage.has(cid):
            return None
        return storage.get_bytes(cid, max_size=max_size)
    except ProvenanceError:
        return None


def certificate_names(
    storage: BlockSource,
    digests: Mapping[bytes, bytes],
    *,
    fetch_missing: bool = False,
) -> dict[bytes, str]:
    """Model names by model id, from the certificates whose digests (on chain) ``digests``
    maps each id to; an id whose certificate is not in storage or does not parse is left out
    (its name is unknown). Each certificate is read once."""
    from provenance.certificate import MAX_BODY_SIZE, body_of, parse_certificate

    by_digest: dict[bytes, str | None] = {}
    names: dict[bytes, str] = {}
    for model_id, digest in digests.items():
        if digest not in by_digest:
            data = stored_text(storage, digest, max_size=MAX_BODY_SIZE, fetch_missing=fetch_missing)
            name = None
            if data is not None:
                try:
                    name = body_of(parse_certificate(data, "certificate")).model_name
                except ProvenanceError:
                    name = None
            by_digest[digest] = name
        found = by_digest[digest]
        if found is not None:
            names[model_id] = found
    return names


def tree_certificate_digests(source: Any, ids: Iterable[bytes]) -> dict[bytes, bytes]:
    """The certificate digest of each of ``ids`` that ``source`` (a LineageIndex) knows."""
    found = {}
    for model_id in ids:
        indexed = source.get(model_id)
        if indexed is not None:
            found[model_id] = bytes(indexed.certificate_digest)
    return found


# -- impact -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Affected:
    """A descendant affected by a revocation: how it is reached (the shortest chain of edges
    from the revoked model) and its own status."""

    id: bytes
    status: NodeStatus
    path: tuple[TreeEdge, ...]

    @property
    def revoked(self) -> bool:
        return self.status == "revoked"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": "0x" + self.id.hex(),
            "status": self.status,
            "already_revoked": self.revoked,
            "depth": len(self.path),
            "path": [e.to_json() for e in self.path],
        }


def impact(source: LineageSource, model_id: bytes) -> tuple[Affected, ...]:
    """Every descendant of ``model_id``, nearest first, each with its shortest path."""
    paths: dict[bytes, tuple[TreeEdge, ...]] = {model_id: ()}
    queue = deque([model_id])
    found: list[Affected] = []
    while queue:
        current = queue.popleft()
        for child, relation in source.children(current):
            if child in paths:
                continue
            paths[child] = (*paths[current], TreeEdge(current, child, relation.label))
            found.append(Affected(child, node_status(source, child), paths[child]))
            queue.append(child)
    return tuple(found)


# -- renderers --------------------------------------------------------------------------------


def render_json(tree: FamilyTree) -> str:
    return json.dumps(tree.to_json(), indent=2) + "\n"


def rich_tree(tree: FamilyTree, *, unknown_names: bool = False) -> Tree:
    """The text form: the focus, then ``ancestors`` and ``descendants`` branches; each model
    with its status, name and registration time (UTC) when known (``unknown_names``: say
    "(name unknown)" where no name is, when names were looked for)."""
    by_id = {n.id: n for n in tree.nodes}

    def label(node: dict[str, Any], arrow: str) -> str:
        colour = RICH_COLOUR[node["status"]]
        via = f"{arrow} {node['relation']} " if "relation" in node else ""
        found = by_id.get(bytes.fromhex(node["id"][2:]))
        name = None if found is None else found.name
        shown = f" {_rich_escape(printable(name, one_line=True))}" if name else ""
        if not name and unknown_names:
            shown = " [dim](name unknown)[/]"
        when = utc_time(None if found is None else found.registered_at)
        at = f" [dim]{when}[/]" if when else ""
        return f"{via}[bold]{node['id'][:18]}\u2026[/] [{colour}]{node['status']}[/]{shown}{at}"

    doc = tree.nested()
    root = Tree(label(doc, ""))

    def add(branch: Tree, nodes: list[dict[str, Any]], key: str, arrow: str) -> None:
        for node in nodes:
            add(branch.add(label(node, arrow)), node[key], key, arrow)

    add(root.add("[dim]ancestors[/]"), doc["parents"], "parents", "\u2190")
    add(root.add("[dim]descendants[/]"), doc["children"], "children", "\u2192")
    return root


def _rich_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def render_mermaid(tree: FamilyTree) -> str:
    """A Mermaid flowchart: ``classDef`` per status, edges labelled with their relation."""
    ids = {n.id: f"m{i}" for i, n in enumerate(tree.nodes)}
    lines = ["flowchart TD"]
    for status in STATUSES:
        lines.append(
            f"    classDef {status} fill:{FILL[status]},stroke:{STROKE[status]},color:#000"
        )
    lines.append(f"    classDef focus stroke:{FOCUS_STROKE},stroke-width:4px")
    for n in tree.nodes:
        name = printable(n.name, one_line=True) if n.name else None
        parts = [n.short] + ([_mermaid_text(name)] if name else []) + [n.status]
        lines.append(f'    {ids[n.id]}["{"<br/>".join(parts)}"]:::{n.status}')
    for e in tree.edges:
        lines.append(f"    {ids[e.parent]} -->|{e.relation}| {ids[e.child]}")
    lines.append(f"    class {ids[tree.focus]} focus")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(tree: FamilyTree, *, href: Href | None = None) -> str:
    """Graphviz DOT: nodes filled by status (class ``status-<status>``, SVG id
    ``model-0x<id>``, tooltip, ``URL`` from ``href``), edges labelled with their relation."""
    lines = [
        "digraph lineage {",
        '    graph [rankdir=TB, bgcolor="transparent", fontname="Helvetica", nodesep=0.4];',
        '    node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11,'
        " penwidth=1.5];",
        '    edge [fontname="Helvetica", fontsize=10, color="#555555", fontcolor="#333333"];',
    ]
    for n in tree.nodes:
        focus = n.id == tree.focus
        # names come from certificates: no control characters into DOT, SVG (XML) or a page
        name = printable(n.name, one_line=True) if n.name else None
        label = "\n".join([n.short] + ([name] if name else []) + [n.status])
        tooltip = " ".join(
            [name or n.hex, f"({n.status})"]
            + ([f"registered by {n.registrant}"] if n.registrant else [])
            + ([f"in block {n.block}"] if n.block is not None else [])
        )
        attrs = {
            "id": f"model-{n.hex}",
            "class": f"status-{n.status}" + (" focus" if focus else ""),
            "label": label,
            "fillcolor": FILL[n.status],
            "color": FOCUS_STROKE if focus else STROKE[n.status],
            "tooltip": tooltip,
        }
        if href is not None:
            attrs["URL"] = href(n.id)
        shown = ", ".join(f"{k}={_dot_text(v)}" for k, v in attrs.items())
        extra = ", penwidth=4" if focus else ""
        lines.append(f"    {_dot_text(n.hex)} [{shown}{extra}];")
    for e in tree.edges:
        lines.append(
            f"    {_dot_text('0x' + e.parent.hex())} -> {_dot_text('0x' + e.child.hex())}"
            f" [id={_dot_text(f'edge-0x{e.parent.hex()}-0x{e.child.hex()}')},"
            f" label={_dot_text(e.relation)}, class={_dot_text('relation-' + e.relation)}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(tree: FamilyTree, *, href: Href | None = None, dot: str = "dot") -> str:
    """The tree laid out by Graphviz (``dot -Tsvg``), an SVG document."""
    program = shutil.which(dot)
    if program is None:
        raise ProvenanceError(
            f"rendering SVG needs Graphviz's `{dot}` program, which is not on PATH "
            "(Debian: apt-get install graphviz; scripts/setup.sh installs it)"
        )
    try:
        done = subprocess.run(
            [program, "-Tsvg"],
            input=render_dot(tree, href=href).encode(),
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvenanceError(f"Graphviz `{program}` failed: {exc}") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise ProvenanceError(
            f"Graphviz `{program}` exited with {done.returncode}: {reason[-1] if reason else ''}"
        )
    return done.stdout.decode()


def svg_element(svg: str) -> str:
    """The ``<svg>`` element of an SVG document (no XML prolog or doctype), for inlining."""
    start = svg.find("<svg")
    if start < 0:
        raise ProvenanceError("not an SVG document: no <svg> element")
    return svg[start:]


def legend_html() -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{FILL[s]};border-color:{STROKE[s]}">'
        f"</span>{s}</li>"
        for s in STATUSES
    )
    focus = (
        f'<li><span class="swatch" style="background:#fff;border:3px solid {FOCUS_STROKE}">'
        "</span>this model</li>"
    )
    return f'<ul class="legend">{items}{focus}</ul>'


def render_html(tree: FamilyTree, *, href: Href | None = None, dot: str = "dot") -> str:
    """One self-contained page: a title, the legend and the SVG tree inline."""
    focus = tree.node(tree.focus)
    title = f"Family tree of {printable(focus.name or focus.hex, one_line=True)}"
    svg = svg_element(render_svg(tree, href=href, dot=dot))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #212121; }}
h1 {{ font-size: 1.2rem; word-break: break-all; }}
.legend {{ display: flex; gap: 1.2rem; list-style: none; padding: 0; }}
.legend li {{ display: flex; align-items: center; gap: .4rem; }}
.swatch {{ display: inline-block; width: 1rem; height: 1rem; border: 2px solid; border-radius: 3px; }}
.tree svg {{ max-width: 100%; height: auto; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(focus.hex)}: {len(tree.nodes)} models, {len(tree.edges)} links.</p>
{legend_html()}
<div class="tree">
{svg}</div>
</body>
</html>
"""


FORMATS = ("text", "json", "mermaid", "dot", "html", "svg")


def render(tree: FamilyTree, fmt: str, *, href: Href | None = None, dot: str = "dot") -> str:
    """``tree`` in one of :data:`FORMATS` other than ``text`` (use :func:`rich_tree`)."""
    renderers: dict[str, Callable[[], str]] = {
        "json": lambda: render_json(tree),
        "mermaid": lambda: render_mermaid(tree),
        "dot": lambda: render_dot(tree, href=href),
        "svg": lambda: render_svg(tree, href=href, dot=dot),
        "html": lambda: render_html(tree, href=href, dot=dot),
    }
    if fmt not in renderers:
        raise ProvenanceError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    return renderers[fmt]()


__all__ = [
    "FILL",
    "FORMATS",
    "STATUSES",
    "STROKE",
    "Affected",
    "FamilyTree",
    "LineageSource",
    "NodeStatus",
    "TreeEdge",
    "TreeNode",
    "build_family_tree",
    "certificate_names",
    "impact",
    "legend_html",
    "node_status",
    "render",
    "render_dot",
    "render_html",
    "render_json",
    "render_mermaid",
    "render_svg",
    "rich_tree",
    "stored_text",
    "svg_element",
    "tree_certificate_digests",
    "utc_time",
]
