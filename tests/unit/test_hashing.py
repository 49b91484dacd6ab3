"""provenance.hashing: file digests (plain and sharded, serial and parallel), Merkle trees and
proofs, checked against openssl, shell tools and the RFC 6962 reference vectors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provenance.errors import CertificateError, IntegrityError
from provenance.hashing import (
    EMPTY_ROOT,
    MerkleBuilder,
    MerkleProof,
    format_digest,
    hash_file,
    hash_files,
    leaf_hash,
    list_files,
    merkle_proof,
    merkle_root,
    node_hash,
    parse_digest,
    root_from_proof,
    verify_merkle_proof,
)

# The Certificate Transparency reference vectors (RFC 6962 Merkle Tree Hash): leaves, the
# roots of their first n, and audit paths (leaf index from 1, as published).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f")
]  # fmt: skip
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATHS = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, literally: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def rfc_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH(m, D[n])."""
    if len(leaves) <= 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return [*rfc_path(m, leaves[:k]), mth(leaves[k:])]
    return [*rfc_path(m - k, leaves[k:]), mth(leaves[:k])]


# -- digests ----------------------------------------------------------------------------------


def test_digest_text_round_trip_and_errors() -> None:
    raw = bytes(range(32))
    assert format_digest(raw) == "sha256:" + raw.hex()
    assert parse_digest(format_digest(raw)) == raw
    assert parse_digest("sha256:" + raw.hex().upper()) == raw
    for bad in ("0x" + raw.hex(), "sha256:abc", "sha256:" + "zz" * 32):
        with pytest.raises(CertificateError) as exc:
            parse_digest(bad, "model digest")
        assert str(exc.value) == f"model digest {bad!r} is not of the form sha256:<64 hex digits>"
    with pytest.raises(CertificateError, match=r"^a SHA-256 digest has 32 bytes, got 3$"):
        format_digest(b"abc")


def openssl_sha256(path: Path) -> str:
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-r", str(path)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[0]


@pytest.mark.parametrize("size", [0, 1, 4 << 20, (4 << 20) + 7])
def test_a_file_up_to_the_shard_size_is_its_plain_sha256(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(size))
    got = hash_file(path)
    assert got.size == size and got.shard_size is None and got.shards == ()
    assert got.digest.hex() == openssl_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert str(got) == "sha256:" + got.digest.hex()


def test_a_large_file_is_the_digest_of_its_shard_digests_as_shell_tools_compute_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "model.bin"
    data = os.urandom(10_000)
    path.write_bytes(data)
    got = hash_file(path, shard_size=4096, workers=3)
    shards = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    assert got.shard_size == 4096 and len(got.shards) == 3
    assert got.shards == tuple(hashlib.sha256(s).digest() for s in shards)
    assert got.digest == hashlib.sha256(b"".join(got.shards)).digest()
    # the recipe of the module docstring
    script = (
        "split -b 4096 --numeric-suffixes model.bin s. && "
        'for s in s.*; do openssl dgst -sha256 -binary "$s"; done | openssl dgst -sha256 -r'
    )
    out = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[0] == got.digest.hex()
    # a file of exactly one shard stays plain
    assert hash_file(path, shard_size=10_000).shard_size is None


def test_parallel_and_serial_hashing_agree_and_report_progress(tmp_path: Path) -> None:
    paths = []
    for i in range(12):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(i * 3000))
        paths.append(p)
    seen: list[int] = []
    serial = hash_files(paths, shard_size=5000, workers=1)
    parallel = hash_files(paths, shard_size=5000, workers=4, progress=seen.append)
    assert serial == parallel
    assert list(parallel) == paths  # the order given
    assert sum(seen) == sum(p.stat().st_size for p in paths)


def test_missing_file_and_bad_shard_size(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError) as exc:
        hash_file(tmp_path / "nope")
    assert str(exc.value) == f"cannot read {tmp_path / 'nope'}: No such file or directory"
    (tmp_path / "x").write_bytes(b"x")
    with pytest.raises(CertificateError, match=r"^shard size must be positive, got 0$"):
        hash_file(tmp_path / "x", shard_size=0)


def test_list_files_sorts_by_utf8_path_follows_file_links_and_refuses_dangling(
    tmp_path: Path,
) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("z")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "B.txt").write_text("B")
    (tmp_path / "é.txt").write_text("e")
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    (tmp_path / "dirlink").symlink_to(tmp_path / "b")
    assert list(list_files(tmp_path)) == ["B.txt", "a.txt", "b/z.txt", "link.txt", "é.txt"]
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(IntegrityError) as exc:
        list_files(tmp_path)
    assert str(exc.value) == (
        f"{tmp_path / 'dangling'} is not a regular file (dangling link, FIFO, socket)"
    )


# -- Merkle trees -----------------------------------------------------------------------------


def test_roots_match_the_rfc6962_reference_vectors() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    for n in range(len(CT_LEAVES) + 1):
        assert merkle_root(CT_LEAVES[:n]).hex() == CT_ROOTS[n], n


def test_proofs_match_the_rfc6962_reference_audit_paths() -> None:
    for leaf, size, path in CT_PATHS:
        proof = merkle_proof(CT_LEAVES[:size], leaf - 1)
        assert [p.hex() for p in proof.path] == path
        verify_merkle_proof(CT_LEAVES[leaf - 1], proof, bytes.fromhex(CT_ROOTS[size]))


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_builder_equals_rfc_definition(leaves: list[bytes]) -> None:
    builder = MerkleBuilder()
    for leaf in leaves:
        builder.add(leaf)
    assert builder.size == len(leaves)
    assert builder.root() == merkle_root(leaves) == mth(leaves)


def test_every_proof_of_trees_up_to_40_leaves_is_the_rfc_path_and_verifies() -> None:
    for n in range(1, 41):
        leaves = [i.to_bytes(2, "big") for i in range(n)]
        root = mth(leaves)
        for i in range(n):
            proof = merkle_proof(leaves, i)
            assert list(proof.path) == rfc_path(i, leaves), (n, i)
            verify_merkle_proof(leaves[i], proof, root)
            verify_merkle_proof(leaf_hash(leaves[i]), proof, root, hashed=True)
            assert MerkleProof.from_json(proof.to_json()) == proof


def test_a_wrong_leaf_index_or_root_is_an_integrity_error() -> None:
    leaves = [b"a", b"b", b"c", b"d", b"e"]
    root = merkle_root(leaves)
    proof = merkle_proof(leaves, 2)
    with pytest.raises(IntegrityError) as exc:
        verify_merkle_proof(b"x", proof, root)
    found = format_digest(root_from_proof(leaf_hash(b"x"), proof))
    assert str(exc.value) == (
        f"Merkle proof of leaf 2 of 5 leads to {found}, not to the root {format_digest(root)}"
    )
    moved = MerkleProof(3, 5, proof.path)  # same path, claimed at another position
    with pytest.raises(IntegrityError):
        verify_merkle_proof(b"c", moved, root)
    with pytest.raises(IntegrityError):
        verify_merkle_proof(b"c", proof, merkle_root(leaves[::-1]))


def test_malformed_proofs_are_certificate_errors() -> None:
    leaves = [b"a", b"b", b"c"]
    proof = merkle_proof(leaves, 0)
    root = merkle_root(leaves)
    with pytest.raises(CertificateError, match=r"^proof path too short for leaf 0 of 3$"):
        verify_merkle_proof(b"a", MerkleProof(0, 3, proof.path[:1]), root)
    with pytest.raises(CertificateError, match=r"^proof path too long for leaf 0 of 3$"):
        verify_merkle_proof(b"a", MerkleProof(0, 3, (*proof.path, root)), root)
    with pytest.raises(CertificateError, match=r"^proof index 3 is outside a tree of 3 leaves$"):
        verify_merkle_proof(b"a", MerkleProof(3, 3, proof.path), root)
    with pytest.raises(CertificateError, match=r"^leaf index 5 is outside a tree of 3 leaves$"):
        merkle_proof(leaves, 5)
    with pytest.raises(CertificateError, match=r"^Merkle proof lacks 'path'$"):
        MerkleProof.from_json({"index": 0, "size": 1})


# -- BLAKE3 (optional manifest hash) ----------------------------------------------------------

try:
    import blake3
except ImportError:  # the blake3 extra; CI installs it
    blake3 = None
needs_blake3 = pytest.mark.skipif(blake3 is None, reason="the blake3 extra is not installed")
GOLDEN_BLAKE3 = Path(__file__).resolve().parents[1] / "golden" / "blake3.json"


@needs_blake3
def test_blake3_of_nothing_is_the_reference_vector(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    got = hash_file(tmp_path / "empty", algorithm="blake3")
    # the BLAKE3 paper's / b3sum's digest of the empty input
    assert str(got) == "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert got.algorithm == "blake3" and got.shard_size is None and got.size == 0


@needs_blake3
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_blake3_is_the_whole_file_digest_for_any_thread_count(tmp_path: Path, workers: int) -> None:
    # across the read size of a lone file (8 MiB) and over the SHA-256 shard size given
    sizes = [0, 1, 1 << 20, (8 << 20) + 7, (17 << 20) + 3]
    paths = []
    for i, size in enumerate(sizes):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(size))
        paths.append(p)
    seen: list[int] = []
    many = hash_files(
        paths, workers=workers, shard_size=4 << 20, algorithm="blake3", progress=seen.append
    )
    assert sum(seen) == sum(sizes)
    for p in paths:
        expected = blake3.blake3(p.read_bytes()).digest()
        assert many[p].digest == expected and many[p].shard_size is None and many[p].shards == ()
        alone = hash_file(p, workers=workers, shard_size=4 << 20, algorithm="blake3")
        assert alone == many[p]
        assert alone.text == "blake3:" + expected.hex()


def test_an_unknown_algorithm_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"x")
    with pytest.raises(CertificateError) as exc:
        hash_file(tmp_path / "x", algorithm="md5")  # type: ignore[arg-type]
    assert str(exc.value) == "unknown file hash algorithm 'md5' (known: sha256, blake3)"


def golden_tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(bytes(range(256)) * 4096)
    (root / "config.json").write_text('{"layers": 2}\n', encoding="utf-8")
    (root / "sub" / "empty").write_bytes(b"")
    return root


@needs_blake3
def test_blake3_manifest_names_its_algorithm_and_matches_its_golden_root(tmp_path: Path) -> None:
    from provenance.manifest import FileEntry, FileManifest, manifest_of, verify_manifest

    folder = golden_tree(tmp_path / "model")
    b3 = manifest_of(folder, algorithm="blake3")
    sha = manifest_of(folder)
    golden = json.loads(GOLDEN_BLAKE3.read_text())
    assert b3.root == golden["blake3_manifest_root"]
    assert sha.root == golden["sha256_manifest_root"]
    # the SHA-256 digests are the ones of the code before BLAKE3 came (plain and sharded)
    assert manifest_of(folder, shard_size=100_000).root == golden["sha256_sharded_manifest_root"]
    assert [f.digest for f in b3.files] == golden["blake3_file_digests"]
    assert all(f.algorithm == "blake3" for f in b3.files)
    assert all(f.algorithm == "sha256" for f in sha.files)
    # the algorithm is in every leaf: the same files under another function, another root
    assert b3.root != sha.root
    # a manifest read back keeps it, and verifies the files with it
    again = FileManifest.model_validate_json(b3.model_dump_json())
    assert again == b3
    verify_manifest(again, folder)
    with pytest.raises(ValueError, match="a blake3 digest has no shard size"):
        FileEntry(path="w", size=1, digest=b3.files[0].digest, shard_size=4096)
    with pytest.raises(ValueError, match="String should match pattern"):
        FileEntry(path="w", size=1, digest="md5:" + "0" * 64)


@needs_blake3
def test_verify_manifest_rehashes_with_the_manifests_algorithm(tmp_path: Path) -> None:
    from provenance.manifest import manifest_of, verify_manifest

    folder = golden_tree(tmp_path / "model")
    big = folder / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    b3 = manifest_of(folder, algorithm="blake3")
    sharded = manifest_of(folder, shard_size=1 << 20)
    verify_manifest(b3, folder, workers=2)
    verify_manifest(sharded, folder, workers=2)
    data = bytearray((folder / "config.json").read_bytes())
    data[0] ^= 1
    (folder / "config.json").write_bytes(bytes(data))
    now = hash_file(folder / "config.json", algorithm="blake3")
    with pytest.raises(IntegrityError) as exc:
        verify_manifest(b3, folder)
    entry = next(f for f in b3.files if f.path == "config.json")
    assert str(exc.value) == (
        f"{folder}: config.json has {now.size} bytes and digest {now.text}, "
        f"the manifest says {entry.size} bytes and {entry.digest}"
    )


def test_blake3_without_its_package_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "blake3", None)
    (tmp_path / "x").write_bytes(b"x")
    with pytest.raises(CertificateError) as exc:
        hash_file(tmp_path / "x", algorithm="blake3")
    assert str(exc.value) == "BLAKE3 needs the blake3 package: pip install 'provenance[blake3]'"


def test_verify_manifest_does_not_read_again_what_the_caller_just_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provenance import hashing
    from provenance.manifest import manifest_of, verify_manifest

    folder = golden_tree(tmp_path / "model")
    (folder / "big.bin").write_bytes(os.urandom(3 << 20))
    certified = manifest_of(folder)
    hashed = manifest_of(folder)
    # a certificate made with another shard size: that entry alone is hashed again
    other = manifest_of(folder, shard_size=1 << 20)
    read: list[Path] = []
    real = hashing.hash_files

    def counting(paths: Any, **kw: Any) -> dict[Path, hashing.FileDigest]:
        paths = list(paths)
        read.extend(paths)
        return real(paths, **kw)

    monkeypatch.setattr(hashing, "hash_files", counting)
    verify_manifest(certified, folder, hashed=hashed)
    assert read == []
    verify_manifest(other, folder, hashed=hashed)
    assert read == [folder / "big.bin"]
    read.clear()
    verify_manifest(certified, folder)  # nothing given: everything is read
    assert sorted(read) == sorted(p for p in folder.rglob("*") if p.is_file())
    # a difference is found from the hashed manifest, with the same message as by reading
    (folder / "config.json").write_text('{"layers": 3}\n', encoding="utf-8")
    changed = manifest_of(folder)
    entry = next(f for f in certified.files if f.path == "config.json")
    now = next(f for f in changed.files if f.path == "config.json")
    expected = (
        f"{folder}: config.json has {now.size} bytes and digest {now.digest}, "
        f"the manifest says {entry.size} bytes and {entry.digest}"
    )
    for hashed_now in (changed, None):
        with pytest.raises(IntegrityError) as exc:
            verify_manifest(certified, folder, hashed=hashed_now)
        assert str(exc.value) == expected


def test_verify_files_of_an_unregistered_model_hashes_them_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from provenance import hashing
    from provenance.manifest import manifest_of
    from provenance.verify.files import hash_check, unregistered_check
    from provenance.verify.report import CheckName, Checks

    folder = golden_tree(tmp_path / "model")
    certified = manifest_of(folder)
    sibling = (
        tmp_path / "certificate.json",
        SimpleNamespace(model=SimpleNamespace(manifest=certified)),
    )
    calls: list[int] = []
    real = hashing.hash_files

    def counting(paths: Any, **kw: Any) -> dict[Path, hashing.FileDigest]:
        calls.append(1)
        return real(paths, **kw)

    monkeypatch.setattr(hashing, "hash_files", counting)
    c = Checks(str(folder))
    manifest = hash_check(c, folder)
    assert manifest is not None
    unregistered_check(c, folder, manifest, sibling)  # type: ignore[arg-type]
    assert len(calls) == 1
    check = c.items[-1]
    assert check.name == CheckName.MODEL_FILES
    assert check.detail == (
        f"the files match {tmp_path / 'certificate.json'} ({certified.root}), but no registered "
        "model has that digest"
    )


@pytest.mark.parametrize(
    ("algorithm", "workers"), [("sha256", 1), ("sha256", 2), ("blake3", 1), ("blake3", 2)]
)
def test_a_file_that_shrinks_while_hashed_is_an_integrity_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: str, workers: int
) -> None:
    from provenance import hashing

    if algorithm == "blake3" and blake3 is None:
        pytest.skip("the blake3 extra is not installed")
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom((9 << 20) + 5))
    real = hashing._file_size
    # the size is taken first; the file then has a byte less than that
    monkeypatch.setattr(hashing, "_file_size", lambda p: real(p) + 1)
    with pytest.raises(IntegrityError) as exc:
        hash_file(path, workers=workers, algorithm=algorithm)  # type: ignore[arg-type]
    expected = (9 << 20) + 6
    assert str(exc.value) == f"{path} shrank while it was hashed (expected {expected} bytes)"


@needs_blake3
def test_an_export_labels_a_blake3_file_digest_blake3(tmp_path: Path) -> None:
    from cyclonedx.model import HashAlgorithm

    from provenance.export.cyclonedx import _file_components
    from provenance.manifest import manifest_of

    folder = golden_tree(tmp_path / "model")
    for algorithm, label in (("blake3", HashAlgorithm.BLAKE3), ("sha256", HashAlgorithm.SHA_256)):
        manifest = manifest_of(folder, algorithm=algorithm)  # type: ignore[arg-type]
        components = _file_components(manifest, "model")
        hashes = [(h.alg, h.content) for c in components for h in c.hashes]
        assert hashes == [(label, f.digest.split(":", 1)[1]) for f in manifest.files]
