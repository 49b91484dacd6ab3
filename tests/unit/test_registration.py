"""provenance.registration: the pure registration vocabulary (relations, parents, model ids)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from pydantic import ValidationError

import provenance
import provenance.chain
import provenance.chain.types
from provenance.certificate import RELATIONS, ParentLink, parse_relation
from provenance.errors import CertificateError, ProvenanceError
from provenance.registration import (
    ZERO32,
    Parent,
    Registration,
    Relation,
    model_id,
    parents_hash,
)

ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
A = bytes.fromhex("aa" * 32)
B = bytes.fromhex("bb" * 32)


def test_importing_it_pulls_in_no_web3_httpx_docker_nor_the_chain_package() -> None:
    code = (
        "import sys, provenance.registration; "
        "print(sorted(m for m in ('web3', 'httpx', 'docker', 'provenance.chain', 'eth_abi') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_model_id_is_the_contracts_formula_and_model_id_for() -> None:
    registration = Registration(
        b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, parents=(Parent(B, "merge"), Parent(A))
    )
    assert [p.id for p in registration.parents] == [A, B]
    expected_parents = keccak(encode(["(bytes32,uint8)[]"], [[(A, 0), (B, int(Relation.MERGE))]]))
    assert parents_hash(registration.parents) == registration.parents_hash == expected_parents
    expected = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "bytes32", "address"],
            [b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, expected_parents, ALICE],
        )
    )
    assert model_id(registration, ALICE) == registration.model_id_for(ALICE) == expected
    assert model_id(registration, ALICE.lower()) == expected
    bare = Registration(b"\x01" * 32, b"\x02" * 32)
    assert bare.data_commitment == ZERO32
    assert bare.parents_hash == keccak(encode(["(bytes32,uint8)[]"], [[]]))
    assert model_id(bare, ALICE) != expected


def test_a_bad_registrant_is_a_one_line_error_everywhere() -> None:
    registration = Registration(b"\x01" * 32, b"\x02" * 32)
    for compute in (
        lambda: model_id(registration, "nobody"),
        lambda: registration.eip712_message("nobody", 0, 0),
    ):
        with pytest.raises(ProvenanceError) as exc:
            compute()
        assert str(exc.value) == "registrant 'nobody' is not an address"


def test_the_relation_vocabulary_exists_once() -> None:
    assert RELATIONS == Relation.labels() == tuple(r.label for r in Relation)
    assert Relation.parse("Quantize") is Relation.QUANTIZATION
    assert parse_relation(" Online Update ") == "online-update"
    with pytest.raises(ProvenanceError) as exc:
        Relation.parse(8)
    assert str(exc.value) == "unknown relation 8; use 0..7"
    with pytest.raises(CertificateError) as cert_exc:
        parse_relation(-1)
    assert str(cert_exc.value) == "unknown relation -1; use 0..7"
    # a certificate body names the exact label: aliases are for input only
    assert ParentLink(id="0x" + "aa" * 32, relation="merge").relation == "merge"
    with pytest.raises(ValidationError, match="unknown relation 'finetune'; use one of: fine-tune"):
        ParentLink(id="0x" + "aa" * 32, relation="finetune")


def test_the_public_names_are_the_registration_modules() -> None:
    for name in ("Parent", "Registration", "Relation"):
        assert getattr(provenance, name) is getattr(provenance.registration, name)
        assert getattr(provenance.chain, name) is getattr(provenance.registration, name)
        assert not hasattr(provenance.chain.types, name)
