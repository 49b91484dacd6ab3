"""provenance.manifest: file manifests, canonical rows of CSV / Parquet / pandas / numpy tables,
subsets, row proofs and confidential commitments, on real data (scikit-learn's iris as CSV)."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import hmac
import os
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import JsonValue
from sklearn.datasets import load_iris

from provenance.errors import CertificateError, IntegrityError
from provenance.hashing import format_digest, leaf_hash, merkle_root
from provenance.manifest import (
    DatasetOpening,
    DatasetRecord,
    FileEntry,
    FileManifest,
    FilterSelection,
    IndexSelection,
    SampleSelection,
    canonical_json,
    data_commitment,
    dataset_record,
    decode_row,
    encode_text_row,
    encode_value,
    first_row_is_data,
    manifest_of,
    open_table,
    prove_row,
    recompute_dataset,
    salted_commitment,
    subset_of,
    verify_manifest,
    verify_opening,
    verify_row_proof,
    verify_subset,
    verify_table,
)


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("iris") / "iris.csv"
    load_iris(as_frame=True).frame.to_csv(path, index=False)
    return path


def cell(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(8, "big") + payload


# -- file manifests ---------------------------------------------------------------------------


def tree(root: Path) -> Path:
    (root / "weights").mkdir(parents=True)
    (root / "config.json").write_text('{"layers": 2}')
    (root / "weights" / "a.bin").write_bytes(b"\x01" * 1000)
    (root / "weights" / "b.bin").write_bytes(b"\x02" * 3000)
    return root


def test_a_directory_manifest_lists_files_by_path_and_roots_their_entries(tmp_path: Path) -> None:
    m = manifest_of(tree(tmp_path / "m"), shard_size=2048)
    assert [f.path for f in m.files] == ["config.json", "weights/a.bin", "weights/b.bin"]
    b = m.files[2]
    assert b.size == 3000 and b.shard_size == 2048
    assert m.files[0].digest == format_digest(hashlib.sha256(b'{"layers": 2}').digest())
    leaves = []
    for f in m.files:
        entry: dict[str, JsonValue] = {"digest": f.digest, "path": f.path, "size": f.size}
        if f.shard_size:
            entry["shard_size"] = f.shard_size
        leaves.append(canonical_json(entry))
    assert m.root == format_digest(merkle_root(leaves)) == m.digest
    assert FileManifest.model_validate(m.model_dump()) == m
    single = manifest_of(tmp_path / "m" / "config.json")
    assert [f.path for f in single.files] == ["config.json"]


def test_a_changed_renamed_added_or_removed_file_changes_the_root(tmp_path: Path) -> None:
    base = manifest_of(tree(tmp_path / "m")).root
    roots = set()
    (tmp_path / "m" / "weights" / "a.bin").write_bytes(b"\x01" * 999 + b"\x00")
    roots.add(manifest_of(tmp_path / "m").root)
    (tmp_path / "m" / "weights" / "a.bin").write_bytes(b"\x01" * 1000)
    assert manifest_of(tmp_path / "m").root == base
    (tmp_path / "m" / "weights" / "a.bin").rename(tmp_path / "m" / "weights" / "c.bin")
    roots.add(manifest_of(tmp_path / "m").root)
    (tmp_path / "m" / "extra").write_bytes(b"")
    roots.add(manifest_of(tmp_path / "m").root)
    assert base not in roots and len(roots) == 3


def test_verify_manifest_names_the_first_difference(tmp_path: Path) -> None:
    folder = tree(tmp_path / "m")
    m = manifest_of(folder, shard_size=2048)
    verify_manifest(m, folder)
    (folder / "weights" / "b.bin").write_bytes(b"\x02" * 2999 + b"\x03")
    with pytest.raises(IntegrityError) as exc:
        verify_manifest(m, folder)
    assert str(exc.value).startswith(f"{folder}: weights/b.bin has 3000 bytes and digest sha256:")
    assert str(exc.value).endswith(f"the manifest says 3000 bytes and {m.files[2].digest}")
    (folder / "weights" / "b.bin").unlink()
    with pytest.raises(IntegrityError, match=r"weights/b.bin is in the manifest but missing$"):
        verify_manifest(m, folder)
    (folder / "weights" / "b.bin").write_bytes(b"\x02" * 3000)
    (folder / "new").write_text("x")
    with pytest.raises(IntegrityError, match=r": new is not in the manifest$"):
        verify_manifest(m, folder)


def test_an_inconsistent_file_manifest_does_not_validate() -> None:
    entry = FileEntry(path="a", size=1, digest="sha256:" + "00" * 32)
    good = FileManifest.of([entry])
    with pytest.raises(ValueError, match=r"is not the Merkle root of the files"):
        FileManifest(root="sha256:" + "11" * 32, files=(entry,))
    with pytest.raises(ValueError, match=r"must be sorted by path, each path once"):
        FileManifest(root=good.root, files=(entry, entry))


# -- canonical rows ---------------------------------------------------------------------------


def test_csv_rows_are_text_cells_exactly_as_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,"x, y"\n\n2.0,\n')
    table = open_table(path)
    assert [(c.name, c.dtype) for c in table.columns] == [("a", "text"), ("b", "text")]
    rows = list(table.rows())
    assert rows == [
        cell(b"s", b"1") + cell(b"s", b"x, y"),  # quoted comma, blank line skipped
        cell(b"s", b"2.0") + cell(b"s", b""),
    ]
    assert rows[0] == encode_text_row(["1", "x, y"])
    m = table.manifest()
    assert m.rows == 2 and m.root == format_digest(merkle_root(rows)) and m.delimiter == ","
    assert decode_row(rows[0]) == ["1", "x, y"]


HEADERLESS = "5.1,3.5,setosa\n4.9,3.0,setosa\n\n6.2,2.9,virginica\n"


def test_a_csv_whose_first_row_reads_as_data_is_refused_unless_the_caller_says(
    tmp_path: Path,
) -> None:
    path = tmp_path / "iris.csv"
    path.write_text(HEADERLESS)
    with pytest.raises(CertificateError) as refused:
        open_table(path)
    assert str(refused.value) == (
        f"{path}: the first row (5.1,3.5,setosa) reads as data, not column names: say whether "
        "it is a header (header=True, --header) or the file has none (header=False, --no-header)"
    )
    headerless = open_table(path, header=False)
    assert [c.name for c in headerless.columns] == ["0", "1", "2"]
    assert {c.dtype for c in headerless.columns} == {"text"}
    rows = list(headerless.rows())
    assert [decode_row(r) for r in rows] == [
        ["5.1", "3.5", "setosa"],  # the first row is data, committed like the others
        ["4.9", "3.0", "setosa"],
        ["6.2", "2.9", "virginica"],
    ]
    m = headerless.manifest()
    assert m.rows == 3 and m.header is False and m.root == format_digest(merkle_root(rows))
    assert b'"header":false' in canonical_json(m)
    named = open_table(path, header=True).manifest()  # the caller's word: a header row
    assert named.rows == 2 and named.header is None and b"header" not in canonical_json(named)
    assert [c.name for c in named.columns] == ["5.1", "3.5", "setosa"]
    assert named.digest != m.digest


def test_a_headerless_csv_is_recomputed_subset_and_proven_as_it_was_hashed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "iris.csv"
    path.write_text(HEADERLESS)
    table = open_table(path, header=False)
    whole, _ = dataset_record("iris.csv", table.manifest())
    assert recompute_dataset(whole, path) == f"3 rows match {table.manifest().root}"
    picked = subset_of(table, FilterSelection(expression="`0` > 5"))
    assert picked.positions == (0, 2)
    record, _ = dataset_record("iris.csv", picked.manifest, subset=picked.subset)
    assert recompute_dataset(record, path).startswith("2 of 3 rows selected by filter")
    proof = prove_row(record, table, 0)
    assert proof.cells == ["5.1", "3.5", "setosa"] and proof.source_row == 0
    verify_row_proof(proof, record.commitment)
    path.write_text("sepal,petal,species\n" + HEADERLESS)  # a header added: no longer the rows
    with pytest.raises(IntegrityError, match=r"^row count differs: recorded 3, recomputed 4$"):
        recompute_dataset(whole, path)


@pytest.mark.parametrize(
    ("text", "is_data"),
    [
        ("5.1,3.5,setosa\n4.9,3.0,setosa\n", True),
        ("1,2\n3,4\n", True),
        (",1.5\n0,2.5\n", True),  # an empty cell votes for nothing
        ("a,b\n1,2\n", False),
        ("x,1.5\n2.5,2.5\n", False),  # a name above numbers: a header
        ("0,1,2\n5.1,3.5,1.4\n", False),  # what pandas writes for unnamed columns
        (",0,1\n0,5.1,3.5\n", False),  # the same after an unnamed index
        ("name,city\nada,london\n", False),  # text only: cannot tell, a header
        ("1,2\n", False),  # nothing below: a header
    ],
)
def test_the_first_row_reads_as_data_only_on_clear_evidence(text: str, is_data: bool) -> None:
    first, *below = [line.split(",") for line in text.splitlines()]
    assert first_row_is_data(first, below) is is_data


def test_header_applies_to_csv_files_only(tmp_path: Path) -> None:
    message = "only a CSV file has a header row to read or not (header=, --header/--no-header)"
    with pytest.raises(CertificateError, match=f"^{re.escape(message)}$"):
        open_table(pd.DataFrame({"a": [1]}), header=False)
    with pytest.raises(CertificateError, match=f"^{re.escape(message)}$"):
        open_table(tmp_path / "t.parquet", header=True)


def test_frame_cells_follow_their_dtype() -> None:
    frame = pd.DataFrame(
        {
            "i32": np.array([1, -2], dtype=np.int32),
            "u8": np.array([1, 255], dtype=np.uint8),
            "f64": [1.5, np.nan],
            "f32": np.array([-0.0, 2.0], dtype=np.float32),
            "b": [True, False],
            "I": pd.array([7, None], dtype="Int64"),
            "s": ["x", None],
            "t": pd.to_datetime(["2020-01-01", None]).astype("datetime64[ns]"),
            "o": [decimal.Decimal("1.10"), dt.date(2020, 1, 2)],
        }
    )
    rows = list(open_table(frame).rows())
    assert rows[0] == b"".join(
        [
            cell(b"i", struct.pack(">i", 1)),
            cell(b"u", b"\x01"),
            cell(b"f", struct.pack(">d", 1.5)),
            cell(b"f", b"\x80\x00\x00\x00"),  # -0.0 keeps its sign
            cell(b"b", b"\x01"),
            cell(b"i", struct.pack(">q", 7)),
            cell(b"s", b"x"),
            cell(b"M", b"datetime64[ns]:1577836800000000000"),
            cell(b"D", b"1.10"),
        ]
    )
    assert rows[1] == b"".join(
        [
            cell(b"i", struct.pack(">i", -2)),
            cell(b"u", b"\xff"),
            cell(b"f", b"\x7f\xf8" + b"\x00" * 6),  # the canonical NaN
            cell(b"f", struct.pack(">f", 2.0)),
            cell(b"b", b"\x00"),
            cell(b"n", b""),
            cell(b"n", b""),
            cell(b"n", b""),
            cell(b"T", b"2020-01-02"),
        ]
    )
    assert decode_row(rows[1])[:4] == [-2, 255, "nan", 2.0]


def test_the_root_is_dtype_order_and_value_sensitive() -> None:
    base = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    root = open_table(base).manifest().root
    variants = [
        base.astype({"x": "int32"}),
        base.astype({"x": "float64"}),
        base.astype({"x": "str"}),
        base.iloc[[1, 0, 2]],  # reordered rows
        base.assign(y=["a", "b", "d"]),  # a changed cell
        base.iloc[:2],  # a row less
        base[["y", "x"]],  # columns swapped
    ]
    roots = {open_table(v).manifest().root for v in variants}
    assert root not in roots and len(roots) == len(variants)
    # the index is not data: a reindexed frame has the same rows
    assert open_table(base.set_axis([10, 11, 12])).manifest().root == root
    # NaN payloads are canonical
    weird_nan = np.frombuffer(b"\x01\x00\x00\x00\x00\x00\xf8\x7f", dtype="<f8")
    a = open_table(pd.DataFrame({"f": weird_nan})).manifest().root
    assert a == open_table(pd.DataFrame({"f": [np.nan]})).manifest().root


def test_numpy_arrays_and_parquet_are_tables(tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.int16).reshape(3, 2)
    t = open_table(array)
    assert [(c.name, c.dtype) for c in t.columns] == [("0", "int16"), ("1", "int16")]
    assert next(t.rows()) == cell(b"i", b"\x00\x00") + cell(b"i", b"\x00\x01")
    assert open_table(array.astype(np.int32)).manifest().root != t.manifest().root
    records = np.array([(1, 2.5)], dtype=[("a", "<i8"), ("b", "<f4")])
    assert next(open_table(records).rows()) == cell(b"i", struct.pack(">q", 1)) + cell(
        b"f", struct.pack(">f", 2.5)
    )
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, None]})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    from_parquet = open_table(path).manifest()
    from_frame = open_table(frame).manifest()
    assert from_parquet.format == "parquet" and from_frame.format == "dataframe"
    assert from_parquet.columns == from_frame.columns
    assert from_parquet.root == from_frame.root  # same typed rows
    assert from_parquet.digest != from_frame.digest  # the format is part of the manifest


def test_unsupported_sources_and_cells() -> None:
    with pytest.raises(CertificateError, match=r"^cannot encode a object cell canonically$"):
        encode_value(object())
    with pytest.raises(CertificateError) as exc:
        open_table({"a": 1})
    assert str(exc.value) == (
        "cannot read a dict as a table: pass a CSV or Parquet path, a pandas DataFrame or "
        "Series, or a numpy array"
    )
    with pytest.raises(CertificateError) as exc:
        open_table(Path("data.xlsx"))
    assert str(exc.value) == "data.xlsx: unknown table format (expected .csv, .tsv or .parquet)"


# -- subsets ----------------------------------------------------------------------------------


def test_subsets_by_indices_filter_and_sample_verify_from_the_source(iris_csv: Path) -> None:
    table = open_table(iris_csv)
    source = table.manifest()
    assert source.rows == 150
    leaves = table.leaf_hashes()

    picked = [5, 3, 4, 140, 141, 142]
    by_index = subset_of(table, IndexSelection.of(picked))
    assert by_index.subset.selection == IndexSelection(ranges=((5, 6), (3, 5), (140, 143)))
    assert by_index.positions == tuple(picked)
    rows = list(table.rows())
    assert by_index.leaves == tuple(leaves[p] for p in picked)
    assert by_index.manifest.root == format_digest(merkle_root(rows[p] for p in picked))
    assert by_index.subset.source == source

    by_filter = subset_of(
        table, FilterSelection(expression="target == 2 and `sepal length (cm)` > 7")
    )
    frame = pd.read_csv(iris_csv)
    expected = frame.index[(frame.target == 2) & (frame["sepal length (cm)"] > 7)].tolist()
    assert list(by_filter.positions) == expected and len(expected) == 12

    train = subset_of(table, SampleSelection(seed=42, fraction=0.8))
    test = subset_of(table, SampleSelection(seed=42, fraction=0.8, complement=True))
    assert sorted(train.positions + test.positions) == list(range(150))
    assert 100 < len(train.positions) < 140
    for result in (by_index, by_filter, train, test):
        verify_subset(result.manifest, result.subset, open_table(iris_csv))


def test_a_tampered_source_or_subset_fails_verification(iris_csv: Path, tmp_path: Path) -> None:
    result = subset_of(open_table(iris_csv), SampleSelection(seed=1, fraction=0.5))
    lines = iris_csv.read_text().splitlines(keepends=True)
    tampered = tmp_path / "iris.csv"
    tampered.write_text("".join([*lines[:10], lines[10].replace("4.9", "4.8", 1), *lines[11:]]))
    with pytest.raises(IntegrityError) as exc:
        verify_subset(result.manifest, result.subset, open_table(tampered))
    found = open_table(tampered).manifest().root
    assert str(exc.value) == (
        f"table root differs: recorded {result.subset.source.root}, recomputed {found}"
    )
    other = subset_of(open_table(iris_csv), SampleSelection(seed=2, fraction=0.5))
    with pytest.raises(IntegrityError, match=r"^subset (row count|root) differs"):
        verify_subset(other.manifest, result.subset, open_table(iris_csv))
    with pytest.raises(
        IntegrityError, match=r"^the selection picks row 150, the source has 150 rows$"
    ):
        subset_of(open_table(iris_csv), IndexSelection.of([150]))


def test_filter_expressions_cannot_reach_python() -> None:
    with pytest.raises(ValueError, match=r"a filter expression may not use '@' or '__'"):
        FilterSelection(expression="x.__class__")
    with pytest.raises(ValueError, match=r"a filter expression may not use '@' or '__'"):
        FilterSelection(expression="x > @limit")


def test_verify_table_reports_columns(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("x,y\n1,2\n")
    m = open_table(a).manifest()
    a.write_text("x,z\n1,2\n")
    with pytest.raises(
        IntegrityError, match=r"^columns differ: recorded x:text, y:text, found x:text, z:text$"
    ):
        verify_table(m, open_table(a))


# -- dataset records, proofs, confidentiality -------------------------------------------------


def test_row_proofs_on_a_real_csv_subset(iris_csv: Path) -> None:
    result = subset_of(open_table(iris_csv), SampleSelection(seed=7, fraction=0.7))
    record, opening = dataset_record("iris.csv", result.manifest, subset=result.subset)
    assert opening is None and record.commitment == result.manifest.digest
    proof = prove_row(record, open_table(iris_csv), 3)
    assert proof.source_row == result.positions[3]
    line = iris_csv.read_text().splitlines()[1 + proof.source_row]
    assert proof.cells == line.split(",")
    verify_row_proof(proof, record.commitment)
    by_source = prove_row(record, open_table(iris_csv), result.positions[3], by_source_row=True)
    assert by_source == proof
    absent = next(i for i in range(150) if i not in result.positions)
    with pytest.raises(
        CertificateError, match=f"^source row {absent} is not in dataset 'iris.csv'$"
    ):
        prove_row(record, open_table(iris_csv), absent, by_source_row=True)

    forged = proof.model_copy(update={"cells": ["9.9", *proof.cells[1:]]})
    with pytest.raises(IntegrityError, match=r"^the proof's cells are not its encoded row$"):
        verify_row_proof(forged)
    other_row = encode_text_row(["9.9", *map(str, proof.cells[1:])])
    forged = proof.model_copy(
        update={"encoded": "0x" + other_row.hex(), "cells": decode_row(other_row)}
    )
    with pytest.raises(IntegrityError, match=r"^Merkle proof of leaf 3 of"):
        verify_row_proof(forged)
    with pytest.raises(IntegrityError, match=r"^commitment of dataset 'iris.csv' differs"):
        verify_row_proof(proof, "sha256:" + "00" * 32)


def test_confidential_datasets_publish_only_a_salted_commitment(iris_csv: Path) -> None:
    manifest = open_table(iris_csv).manifest()
    salt = bytes(range(32))
    record, opening = dataset_record("iris.csv", manifest, confidential=True, salt=salt)
    assert opening is not None
    assert record.manifest is None and record.subset is None and record.confidential
    # a guess of the (well-known) data reproduces the manifest digest, not the commitment
    assert record.commitment != manifest.digest
    expected = hmac.new(salt, bytes.fromhex(manifest.digest[7:]), hashlib.sha256).hexdigest()
    assert record.commitment == "sha256:" + expected == salted_commitment(manifest.digest, salt)
    verify_opening(record, opening)
    assert DatasetOpening.model_validate_json(opening.model_dump_json()) == opening
    wrong = opening.model_copy(update={"salt": "0x" + "00" * 32})
    with pytest.raises(IntegrityError, match=r"^commitment of dataset 'iris.csv' differs"):
        verify_opening(record, wrong)
    proof = prove_row(record, open_table(iris_csv), 0, opening=opening)
    assert proof.salt == opening.salt
    verify_row_proof(proof, record.commitment)
    # fresh salts: the same data gives unrelated commitments
    again, _ = dataset_record("iris.csv", manifest, confidential=True)
    assert again.commitment != record.commitment
    with pytest.raises(ValueError, match=r"may publish its commitment only"):
        DatasetRecord(name="x", commitment=record.commitment, confidential=True, manifest=manifest)
    with pytest.raises(ValueError, match=r"is not its manifest digest"):
        DatasetRecord(name="x", commitment=record.commitment, manifest=manifest)


def test_the_data_commitment_roots_the_dataset_commitments(iris_csv: Path) -> None:
    a, _ = dataset_record("a", open_table(iris_csv).manifest())
    b, _ = dataset_record("b", open_table(pd.DataFrame({"x": [1]})).manifest(), role="test")
    assert data_commitment([a, b]) == format_digest(
        merkle_root([bytes.fromhex(a.commitment[7:]), bytes.fromhex(b.commitment[7:])])
    )
    assert data_commitment([b, a]) != data_commitment([a, b])
    assert data_commitment([]) == format_digest(hashlib.sha256(b"").digest())


def test_leaf_of_a_row_is_its_digest(iris_csv: Path) -> None:
    table = open_table(iris_csv)
    assert table.leaf_hashes()[0] == leaf_hash(next(table.rows()))
    assert os.path.getsize(iris_csv) > 0
