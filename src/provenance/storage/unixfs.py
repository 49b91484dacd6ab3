"""UnixFS DAGs exactly as ``ipfs add --cid-version=1`` builds them, and their verified reading.

Building follows kubo's defaults, so the same content gets the same CID here and in kubo:

- content is cut into fixed chunks of 256 KiB (kubo's ``size-262144`` chunker);
- every chunk is a raw block (CIDv1 implies raw leaves), hashed with sha2-256;
- the balanced layout gathers chunks under dag-pb file nodes of at most 174 links: the tree is
  as shallow as it can be and filled from the left, and a file of one chunk or less is that
  single raw block (so a certificate of at most 256 KiB is one raw block);
- a directory is a basic UnixFS directory: one dag-pb node, one link per entry, sorted by name.

Out of scope, and refused rather than approximated: HAMT-sharded directories (kubo shards a
directory once its links would take more than 256 KiB, i.e. thousands of entries), symbolic links
and special files inside a tree, mode/mtime metadata, the trickle layout and other chunkers
(which are accepted when *reading*: any UnixFS file DAG reads back). Hidden files are included,
as with ``ipfs add -r --hidden``.

Reading walks a DAG depth-first through a ``fetch`` function that returns *verified* block
bytes (each implementation checks the bytes against the CID before returning them), so a file
streams out block by block in constant memory and nothing unverified is ever yielded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from provenance.errors import IntegrityError, StorageError
from provenance.storage import cid as cids
from provenance.storage.dagpb import (
    DIRECTORY_DATA,
    PBLink,
    PBNode,
    UnixFSData,
    UnixFSType,
    decode_node,
    decode_unixfs,
    encode_file_data,
    encode_node,
)
from provenance.storage.protocol import Progress
from provenance.untrusted import DEFAULT_LIMITS, Limits, unsafe_path_reason

BlockSink = Callable[[bytes, bytes], None]
"""Receives each new block as (binary CID, bytes), children before their parents."""

Fetch = Callable[[bytes], bytes]
"""Returns the bytes of the block with this binary CID, already verified against it."""

CHUNK_SIZE = 262_144
MAX_LEAF = 8 << 20
"""Largest raw leaf a file DAG may declare (kubo's blocks are at most 2 MiB); a larger
declared size is a lie that would otherwise become a huge read."""
MAX_LINKS = 174
HAMT_THRESHOLD = 262_144
"""kubo's ``Import.UnixFSHAMTDirectorySizeThreshold``: once the estimated link bytes of a
directory (name plus binary CID per entry) exceed it, kubo makes a HAMT-sharded directory."""


@dataclass(frozen=True)
class Layout:
    """Chunk size and links per node of the balanced layout (kubo's defaults)."""

    chunk_size: int = CHUNK_SIZE
    max_links: int = MAX_LINKS


DEFAULT_LAYOUT = Layout()


@dataclass(frozen=True)
class Built:
    """The root of a DAG just built: its binary CID, the ``Tsize`` a parent's link to it carries
    (bytes of all its blocks), and the content size in bytes."""

    cid: bytes
    tsize: int
    size: int


def _discard(cid: bytes, block: bytes) -> None:
    return None


# ---------------------------------------------------------------- files
class FileBuilder:
    """Builds the DAG of one file from its bytes, written in pieces of any size.

    Memory stays bounded: one partial chunk and at most ``max_links`` pending links per tree
    level. Blocks go to ``sink`` as soon as they exist (leaves first, root last).
    """

    def __init__(self, sink: BlockSink = _discard, layout: Layout = DEFAULT_LAYOUT) -> None:
        self._sink = sink
        self._chunk = layout.chunk_size
        self._max = layout.max_links
        self._buf = bytearray()
        self._levels: list[list[Built]] = [[]]
        self._leaves = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        n = len(data)
        if not n:
            return
        self.size += n
        if not self._buf and n == self._chunk:
            self._leaf(bytes(data))
            return
        view = memoryview(data)
        pos = 0
        if self._buf:
            pos = self._chunk - len(self._buf)
            self._buf += view[:pos]
            if len(self._buf) < self._chunk:
                return
            self._leaf(bytes(self._buf))
            self._buf = bytearray()
        while n - pos >= self._chunk:
            self._leaf(bytes(view[pos : pos + self._chunk]))
            pos += self._chunk
        if pos < n:
            self._buf += view[pos:]

    def finish(self) -> Built:
        """Emit the last chunk and the nodes above; returns the file's root."""
        if self._buf or not self._leaves:  # an empty file is one empty raw block
            self._leaf(bytes(self._buf))
            self._buf = bytearray()
        i = 0
        while True:
            level = self._levels[i]
            if len(level) == 1 and not any(self._levels[i + 1 :]):
                return level[0]
            if level:
                self._levels[i] = []
                self._push(i + 1, self._node(level))
            i += 1

    def _leaf(self, chunk: bytes) -> None:
        cid = cids.raw_cid(hashlib.sha256(chunk).digest())
        self._sink(cid, chunk)
        self._leaves += 1
        self._push(0, Built(cid, len(chunk), len(chunk)))

    def _push(self, level: int, child: Built) -> None:
        if level == len(self._levels):
            self._levels.append([])
        children = self._levels[level]
        children.append(child)
        if len(children) == self._max:
            self._levels[level] = []
            self._push(level + 1, self._node(children))

    def _node(self, children: list[Built]) -> Built:
        sizes = [c.size for c in children]
        size = sum(sizes)
        block = encode_node(
            [PBLink(c.cid, "", c.tsize) for c in children], encode_file_data(size, sizes)
        )
        cid = cids.dag_pb_cid(hashlib.sha256(block).digest())
        self._sink(cid, block)
        return Built(cid, len(block) + sum(c.tsize for c in children), size)


def build_bytes(data: bytes, sink: BlockSink = _discard, layout: Layout = DEFAULT_LAYOUT) -> Built:
    builder = FileBuilder(sink, layout)
    builder.write(data)
    return builder.finish()


# ---------------------------------------------------------------- directories
@dataclass(frozen=True)
class TreeEntry:
    """One file or directory of a tree to add; ``rel`` is its '/'-separated path starting with
    the top entry's name, as kubo's multipart upload names it."""

    rel: str
    path: Path
    is_dir: bool
    size: int


def scan_tree(path: Path) -> list[TreeEntry]:
    """The entries under ``path`` (itself first), depth-first, each folder's entries sorted by
    name bytes. A symbolic link given as ``path`` is followed; inside the tree, symbolic links
    and special files are refused."""
    try:
        top = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    name = _entry_name(path.name or top.name, path)
    out: list[TreeEntry] = []
    _scan(top, name, out, follow=True)
    return out


def _entry_name(name: str, path: Path) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StorageError(f"{path}: file names must be UTF-8 to be stored in UnixFS") from exc
    return name


def _scan(path: Path, rel: str, out: list[TreeEntry], *, follow: bool = False) -> None:
    try:
        st = path.stat() if follow else path.lstat()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    if stat.S_ISREG(st.st_mode):
        out.append(TreeEntry(rel, path, False, st.st_size))
    elif stat.S_ISDIR(st.st_mode):
        out.append(TreeEntry(rel, path, True, 0))
        try:
            names = [entry.name for entry in os.scandir(path)]
        except OSError as exc:
            raise StorageError(f"cannot list {path}: {exc}") from exc
        for child in sorted((_entry_name(n, path / n) for n in names), key=_name_key):
            _scan(path / child, f"{rel}/{child}", out)
    elif stat.S_ISLNK(st.st_mode):
        raise StorageError(f"{path} is a symbolic link; symbolic links cannot be stored")
    else:
        raise StorageError(f"{path} is not a regular file or directory")


def _name_key(name: str) -> bytes:
    return name.encode("utf-8")


def directory_node(entries: list[tuple[str, Built]], what: str) -> tuple[bytes, Built]:
    """The block and root of a basic UnixFS directory with these (name, child) entries."""
    entries = sorted(entries, key=lambda e: _name_key(e[0]))
    estimate = sum(len(_name_key(name)) + len(child.cid) for name, child in entries)
    if estimate > HAMT_THRESHOLD:
        raise StorageError(
            f"{what} has too many entries for a basic UnixFS directory ({len(entries)}); "
            "kubo would shard it as a HAMT, which is not supported"
        )
    block = encode_node([PBLink(c.cid, name, c.tsize) for name, c in entries], DIRECTORY_DATA)
    cid = cids.dag_pb_cid(hashlib.sha256(block).digest())
    size = sum(c.size for _, c in entries)
    return block, Built(cid, len(block) + sum(c.tsize for _, c in entries), size)


def build_tree(
    entries: list[TreeEntry], files: Mapping[str, Built], sink: BlockSink = _discard
) -> Built:
    """The root of a scanned tree, given the root of every file in it (by ``rel``)."""
    children: dict[str, list[tuple[str, Built]]] = {}
    root: Built | None = None
    for entry in reversed(entries):  # children come before their parents
        if entry.is_dir:
            block, built = directory_node(children.pop(entry.rel, []), str(entry.path))
            sink(built.cid, block)
        else:
            built = files[entry.rel]
        parent, _, name = entry.rel.rpartition("/")
        if parent:
            children.setdefault(parent, []).append((name, built))
        else:
            root = built
    assert root is not None, "scan_tree always yields the top entry"
    return root


def build_path(
    path: Path,
    sink: BlockSink = _discard,
    *,
    layout: Layout = DEFAULT_LAYOUT,
    progress: Progress | None = None,
) -> Built:
    """Build the DAG of a file or directory tree, streaming each file once from disk."""
    entries = scan_tree(path)
    files: dict[str, Built] = {}
    for entry in entries:
        if not entry.is_dir:
            files[entry.rel] = build_file(entry.path, sink, layout=layout, progress=progress)
    return build_tree(entries, files, sink)


def build_file(
    path: Path,
    sink: BlockSink = _discard,
    *,
    layout: Layout = DEFAULT_LAYOUT,
    progress: Progress | None = None,
) -> Built:
    builder = FileBuilder(sink, layout)
    try:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(layout.chunk_size):
                builder.write(chunk)
                if progress is not None:
                    progress(len(chunk))
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    return builder.finish()


def cid_of_path(path: Path, layout: Layout = DEFAULT_LAYOUT) -> str:
    """The CID ``ipfs add --cid-version=1 -r`` gives ``path``, computed without storing anything
    (``--only-hash``)."""
    return cids.to_str(build_path(path, layout=layout).cid)


# ---------------------------------------------------------------- reading
def links(cid: bytes, block: bytes) -> list[bytes]:
    """The binary CIDs a block links to (raw blocks link to nothing)."""
    codec = cids.codec(cid)
    if codec == cids.RAW:
        return []
    if codec == cids.DAG_PB:
        return [link.cid for link in decode_node(block, f"dag-pb block {cids.to_str(cid)}").links]
    raise StorageError(f"{cids.to_str(cid)} has codec 0x{codec:x}; only UnixFS DAGs are supported")


def walk_blocks(fetch: Fetch, root: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every block of the DAG under ``root``, depth-first, each once: a block already visited
    is skipped with its subtree (the order of ``ipfs dag export``)."""
    seen: set[bytes] = set()
    stack: list[Iterator[bytes]] = [iter((root,))]
    while stack:
        cid = next(stack[-1], None)
        if cid is None:
            stack.pop()
            continue
        if cid in seen:
            continue
        seen.add(cid)
        block = fetch(cid)
        yield cid, block
        children = links(cid, block)
        if children:
            stack.append(iter(children))


@dataclass(frozen=True)
class RawLeaf:
    """A raw leaf of a file DAG, not fetched: its CID and its size as its verified parent
    states it."""

    cid: bytes
    size: int


FileContent = Callable[[bytes, bytes | None], Iterator[bytes]]
"""Reads a file's content given its root CID and, when already fetched, its root block."""


def _node_size(fs: UnixFSData, node: PBNode, cid: bytes, what: str) -> tuple[int, ...]:
    """The sizes of a file node's children, after checking the node against itself: one
    blocksize per link, raw leaves no larger than :data:`MAX_LEAF`, and ``filesize`` equal to
    its inline data plus its children's sizes."""
    if len(fs.blocksizes) != len(node.links):
        raise IntegrityError(
            f"malformed {what}: block {cids.to_str(cid)} has {len(node.links)} links but "
            f"{len(fs.blocksizes)} block sizes"
        )
    total = len(fs.data) + sum(fs.blocksizes)
    if fs.filesize is not None and fs.filesize != total:
        raise IntegrityError(
            f"malformed {what}: block {cids.to_str(cid)} declares {fs.filesize} bytes but its "
            f"parts hold {total}"
        )
    for link, size in zip(node.links, fs.blocksizes, strict=True):
        if cids.codec(link.cid) == cids.RAW and size > MAX_LEAF:
            raise IntegrityError(
                f"malformed {what}: a leaf of block {cids.to_str(cid)} declares {size} bytes "
                f"(at most {MAX_LEAF})"
            )
    return fs.blocksizes


def sized_links(cid: bytes, block: bytes, expected: int | None) -> list[tuple[bytes, int | None]]:
    """The links of a verified block, each with the size its content must have (None for a
    directory's entries), after checking the block has the ``expected`` size its parent
    declares (None: the parent declares none). Raw blocks link to nothing."""
    what = f"UnixFS node {cids.to_str(cid)}"
    if cids.codec(cid) == cids.RAW:
        if expected is not None and len(block) != expected:
            raise IntegrityError(
                f"malformed {what}: {len(block)} bytes, its parent says {expected}"
            )
        return []
    node = _pb_node(cid, block, what)
    fs = decode_unixfs(node.data, what)
    if fs.type in (UnixFSType.FILE, UnixFSType.RAW):
        sizes = _node_size(fs, node, cid, what)
        if expected is not None and expected != len(fs.data) + sum(sizes):
            raise IntegrityError(
                f"malformed {what}: holds {len(fs.data) + sum(sizes)} bytes, its parent says "
                f"{expected}"
            )
        return [(link.cid, size) for link, size in zip(node.links, sizes, strict=True)]
    if expected is not None:
        raise IntegrityError(f"malformed {what}: a {fs.type.name.lower()} inside a file")
    return [(link.cid, None) for link in node.links]


def declared_size(cid: bytes, block: bytes) -> int:
    """The size a verified file root declares (a raw block: its length)."""
    if cids.codec(cid) == cids.RAW:
        return len(block)
    what = f"UnixFS file {cids.to_str(cid)}"
    node = _pb_node(cid, block, what)
    fs = decode_unixfs(node.data, what)
    if fs.type not in (UnixFSType.FILE, UnixFSType.RAW):
        raise StorageError(f"{cids.to_str(cid)} is a UnixFS {fs.type.name.lower()}, not a file")
    return len(fs.data) + sum(_node_size(fs, node, cid, what))


def file_pieces(fetch: Fetch, root: bytes, first: bytes | None = None) -> Iterator[RawLeaf | bytes]:
    """The content of the UnixFS file at ``root`` as pieces in order: raw leaves, *not* fetched,
    and content bytes carried inside (verified) dag-pb nodes. Only dag-pb nodes go through
    ``fetch``; a file that is one raw block is fetched whole. Every node's sizes are checked
    against its parent's (a DAG that lies about sizes raises IntegrityError)."""
    if cids.codec(root) == cids.RAW:
        yield first if first is not None else fetch(root)
        return
    what = f"UnixFS file {cids.to_str(root)}"
    stack: list[Iterator[tuple[bytes, int]]] = []
    cid, block = root, first if first is not None else fetch(root)
    expected: int | None = None
    while True:
        node = _pb_node(cid, block, what)
        fs = decode_unixfs(node.data, what)
        if fs.type not in (UnixFSType.FILE, UnixFSType.RAW):
            if cid == root:
                raise StorageError(
                    f"{cids.to_str(root)} is a UnixFS {fs.type.name.lower()}, not a file"
                )
            raise IntegrityError(
                f"malformed {what}: block {cids.to_str(cid)} is a {fs.type.name.lower()}"
            )
        sizes = _node_size(fs, node, cid, what)
        if expected is not None and expected != len(fs.data) + sum(sizes):
            raise IntegrityError(
                f"malformed {what}: block {cids.to_str(cid)} holds {len(fs.data) + sum(sizes)} "
                f"bytes, its parent says {expected}"
            )
        if len(stack) >= DEFAULT_LIMITS.max_depth:
            raise IntegrityError(f"malformed {what}: nested deeper than {len(stack)} levels")
        if fs.data:
            yield fs.data
        stack.append(iter([(link.cid, sizes[i]) for i, link in enumerate(node.links)]))
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
            elif cids.codec(child[0]) == cids.RAW:
                yield RawLeaf(*child)
            else:
                cid, block, expected = child[0], fetch(child[0]), child[1]
                break
        else:
            return


def file_content(fetch: Fetch, root: bytes, first: bytes | None = None) -> Iterator[bytes]:
    """The content of the UnixFS file at ``root``, block by block, every block from ``fetch``;
    each leaf must have the size its parent declares."""
    for piece in file_pieces(fetch, root, first):
        if isinstance(piece, RawLeaf):
            data = fetch(piece.cid)
            check_leaf(piece, data, cids.to_str(root))
        else:
            data = piece
        if data:
            yield data


def check_leaf(leaf: RawLeaf, data: bytes, file: str) -> None:
    """A raw leaf's verified bytes must be as long as its parent declares."""
    if len(data) != leaf.size:
        raise IntegrityError(
            f"malformed UnixFS file {file}: leaf {cids.to_str(leaf.cid)} has {len(data)} bytes, "
            f"its parent says {leaf.size}"
        )


def read_file(fetch: Fetch, root: bytes) -> Iterator[bytes]:
    """The content of the UnixFS file at ``root``, block by block."""
    return file_content(fetch, root)


def _pb_node(cid: bytes, block: bytes, what: str) -> PBNode:
    codec = cids.codec(cid)
    if codec != cids.DAG_PB:
        raise StorageError(
            f"{cids.to_str(cid)} has codec 0x{codec:x}; only UnixFS DAGs are supported"
        )
    return decode_node(block, what)


def gather(chunks: Iterator[bytes], cid: str, max_size: int) -> bytes:
    """Join the chunks of a file, refusing more than ``max_size`` bytes."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_size:
            raise StorageError(f"{cid} holds more than {max_size} bytes; stream it instead")
        parts.append(chunk)
    return b"".join(parts)


def write_tree(
    fetch: Fetch,
    root: bytes,
    dest: Path,
    progress: Progress | None = None,
    content: FileContent | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Write the file or directory at ``root`` to ``dest``, which must not exist yet.

    Directory and file nodes come from ``fetch``; file content from ``content`` (by default
    :func:`file_content` over ``fetch``). Everything is written under a temporary name next
    to ``dest`` and renamed at the end, so a failed verification leaves nothing at ``dest``.
    ``limits`` bounds the bytes written (each file's declared size counts before it is
    fetched), the files and folders created, and the folder depth: a DAG that shares one
    subtree many times cannot expand into more than that.
    """
    if dest.exists() or dest.is_symlink():
        raise StorageError(f"{dest} already exists")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {dest.parent}: {exc}") from exc

    def default(cid: bytes, first: bytes | None) -> Iterator[bytes]:
        return file_content(fetch, cid, first)

    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    budget = _Budget(limits, cids.to_str(root))
    try:
        _write_node(fetch, content or default, root, tmp, progress, budget, 0)
        os.replace(tmp, dest)
    except OSError as exc:
        _remove(tmp)
        raise StorageError(f"cannot write {dest}: {exc}") from exc
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class _Budget:
    """What an extraction may still create (see :class:`~provenance.untrusted.Limits`)."""

    def __init__(self, limits: Limits, root: str) -> None:
        self.limits = limits
        self.root = root
        self.bytes = 0
        self.entries = 0

    def entry(self, depth: int) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise StorageError(
                f"{self.root} holds more than {self.limits.max_entries} files and folders "
                "(limits.max_entries)"
            )
        if depth > self.limits.max_depth:
            raise StorageError(
                f"{self.root} nests folders deeper than {self.limits.max_depth} levels "
                "(limits.max_depth)"
            )

    def reserve(self, size: int) -> None:
        self.bytes += size
        if self.bytes > self.limits.max_download_bytes:
            raise StorageError(
                f"{self.root} holds more than {self.limits.max_download_bytes} bytes "
                "(limits.max_download_bytes)"
            )


def _write_node(
    fetch: Fetch,
    content: FileContent,
    cid: bytes,
    path: Path,
    progress: Progress | None,
    budget: _Budget,
    depth: int,
) -> None:
    budget.entry(depth)
    block = None
    if cids.codec(cid) != cids.RAW:
        block = fetch(cid)
        what = f"UnixFS node {cids.to_str(cid)}"
        node = _pb_node(cid, block, what)
        fs = decode_unixfs(node.data, what)
        if fs.type == UnixFSType.DIRECTORY:
            path.mkdir()
            names: set[str] = set()
            for link in node.links:
                if (
                    link.name in names
                    or "/" in link.name
                    or unsafe_path_reason(link.name) is not None
                ):
                    raise IntegrityError(
                        f"directory {cids.to_str(cid)} has an unsafe or repeated entry name "
                        f"{link.name!r}"
                    )
                names.add(link.name)
                _write_node(fetch, content, link.cid, path / link.name, progress, budget, depth + 1)
            return
        if fs.type not in (UnixFSType.FILE, UnixFSType.RAW):
            raise StorageError(
                f"{cids.to_str(cid)} is a UnixFS {fs.type.name.lower()}, which cannot be "
                "written out here"
            )
        declared = declared_size(cid, block)
        budget.reserve(declared)
    else:
        declared = -1  # a raw file is one verified block: its length is its size
    written = 0
    with open(path, "xb") as f:
        for chunk in content(cid, block):
            written += len(chunk)
            if declared < 0:
                budget.reserve(len(chunk))
            elif written > declared:
                raise IntegrityError(f"{cids.to_str(cid)} holds more than its {declared} bytes")
            f.write(chunk)
            if progress is not None:
                progress(len(chunk))
    if declared >= 0 and written != declared:
        raise IntegrityError(f"{cids.to_str(cid)} holds {written} bytes, not its {declared}")
