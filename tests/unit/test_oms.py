"""OMS (OpenSSF model signing v1.0) signatures, checked with the real ``model_signing``
package both ways: its verifier accepts our bundles, we accept bundles made by its signer."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import signing, verifying

from provenance.errors import ConfigError, IntegrityError
from provenance.export.oms import (
    bundle_beside,
    key_hint,
    load_public_key,
    parse_bundle,
    sign_model,
    verify_covers,
    verify_model_signature,
    write_bundle,
)
from provenance.export.signing_keys import new_signing_key, public_pem
from provenance.manifest import manifest_of


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (folder / "config.json").write_text('{"layers": 2}')
    (folder / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    return folder


@pytest.fixture
def key(tmp_path: Path) -> ec.EllipticCurvePrivateKey:
    return new_signing_key(tmp_path / "oms.pem", "password-1", "p256")


def _public_file(tmp_path: Path, key: ec.EllipticCurvePrivateKey, name: str = "k.pub") -> Path:
    path = tmp_path / name
    path.write_bytes(public_pem(key))
    return path


def test_model_signing_verifies_our_bundle(model: Path, key, tmp_path: Path) -> None:
    written = write_bundle(model, key)
    assert written == tmp_path / "model.sig" == bundle_beside(model)
    public = _public_file(tmp_path, key)
    # model_signing's own verifier, as its CLI `verify key` runs it
    verifying.Config().use_elliptic_key_verifier(public_key=public).verify(model, written)
    signed = verify_model_signature(model, written, [public_pem(key)])
    assert signed.files == {
        "config.json": manifest_of(model / "config.json").files[0].digest[7:],
        "tokenizer/vocab.txt": manifest_of(model / "tokenizer" / "vocab.txt").files[0].digest[7:],
        "weights.bin": manifest_of(model / "weights.bin").files[0].digest[7:],
    }
    verify_covers(signed, manifest_of(model), model, written)


def test_p384_and_single_file(tmp_path: Path) -> None:
    key = new_signing_key(tmp_path / "k384.pem", "password-1", "p384")
    file = tmp_path / "model.pkl"
    file.write_bytes(b"pickled")
    bundle = write_bundle(file, key)
    assert bundle == tmp_path / "model.pkl.sig"
    public = _public_file(tmp_path, key)
    verifying.Config().use_elliptic_key_verifier(public_key=public).verify(file, bundle)
    signed = verify_model_signature(file, bundle, [public_pem(key)])
    verify_covers(signed, manifest_of(file), file, bundle)


def test_we_accept_a_bundle_made_by_model_signing(model: Path, tmp_path: Path) -> None:
    theirs = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "theirs.pem"
    pem.write_bytes(
        theirs.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    bundle = tmp_path / "model.sig"
    signing.Config().use_elliptic_key_signer(private_key=pem).sign(model, bundle)
    trusted = load_public_key(_public_file(tmp_path, theirs))
    signed = verify_model_signature(
        model, bundle, [public_pem(ec.generate_private_key(ec.SECP256R1())), trusted]
    )
    assert signed.key_hint == key_hint(trusted)
    verify_covers(signed, manifest_of(model), model, bundle)


def test_a_changed_file_fails(model: Path, key) -> None:
    bundle = write_bundle(model, key)
    before = manifest_of(model / "weights.bin").files[0].digest
    (model / "weights.bin").write_bytes(b"tampered")
    after = manifest_of(model / "weights.bin").files[0].digest
    with pytest.raises(IntegrityError) as caught:
        verify_model_signature(model, bundle, [public_pem(key)])
    assert str(caught.value) == (
        f"{model}: weights.bin differs from the OMS bundle {bundle} (signed {before}, found "
        f"{after})"
    )


def test_an_extra_file_fails(model: Path, key) -> None:
    bundle = write_bundle(model, key)
    (model / "backdoor.py").write_text("import os")
    with pytest.raises(IntegrityError) as caught:
        verify_model_signature(model, bundle, [public_pem(key)])
    assert str(caught.value) == f"{model}: backdoor.py is not covered by the OMS bundle {bundle}"


def test_a_missing_file_fails(model: Path, key) -> None:
    bundle = write_bundle(model, key)
    (model / "tokenizer" / "vocab.txt").unlink()
    with pytest.raises(IntegrityError) as caught:
        verify_model_signature(model, bundle, [public_pem(key)])
    assert str(caught.value) == (
        f"{model}: tokenizer/vocab.txt is signed in the OMS bundle {bundle} but missing"
    )


def test_another_key_fails(model: Path, key) -> None:
    bundle = write_bundle(model, key)
    other = public_pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(IntegrityError) as caught:
        verify_model_signature(model, bundle, [other])
    assert str(caught.value) == (
        f"OMS bundle {bundle} is signed by a key that is not trusted "
        f"(key hint {key_hint(public_pem(key))[:16]})"
    )


def test_a_forged_key_hint_does_not_help(model: Path, key, tmp_path: Path) -> None:
    """A bundle signed by Mallory that names the trusted key's hint: the signature fails."""
    mallory = ec.generate_private_key(ec.SECP256R1())
    bundle = write_bundle(model, mallory)
    data = json.loads(bundle.read_text())
    data["verificationMaterial"]["publicKey"]["hint"] = key_hint(public_pem(key))
    bundle.write_text(json.dumps(data))
    with pytest.raises(IntegrityError) as caught:
        verify_model_signature(model, bundle, [public_pem(key)])
    assert str(caught.value) == (
        f"OMS bundle {bundle}: the signature does not verify with the trusted key"
    )


def test_a_changed_payload_fails(model: Path, key) -> None:
    """Editing the signed manifest (to match a swapped file) breaks the signature."""
    bundle = write_bundle(model, key)
    data = json.loads(bundle.read_text())
    statement = json.loads(base64.b64decode(data["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "00" * 32
    data["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    bundle.write_text(json.dumps(data))
    with pytest.raises(IntegrityError) as caught:
        verify_model_signature(model, bundle, [public_pem(key)])
    assert str(caught.value) == (
        f"OMS bundle {bundle}: the signature does not verify with the trusted key"
    )


def test_coverage_of_the_certified_files(model: Path, key) -> None:
    certified = manifest_of(model)
    (model / "notes.md").write_text("signed, not certified")
    bundle = write_bundle(model, key)
    signed = verify_model_signature(model, bundle, [public_pem(key)])
    with pytest.raises(IntegrityError) as caught:
        verify_covers(signed, certified, model, bundle)
    assert str(caught.value) == (
        f"the OMS bundle {bundle} signs notes.md, which is not a certified model file"
    )
    (model / "notes.md").unlink()
    (model / ".gitattributes").write_text("*.bin filter=lfs")  # model_signing skips git files
    with_git = manifest_of(model)
    bundle = write_bundle(model, key, overwrite=True)
    signed = verify_model_signature(model, bundle, [public_pem(key)])
    with pytest.raises(IntegrityError) as caught:
        verify_covers(signed, with_git, model, bundle)
    assert str(caught.value) == (
        f"the OMS bundle {bundle} does not cover the certified file .gitattributes"
    )


def test_bad_input_is_one_line(model: Path, key, tmp_path: Path) -> None:
    junk = tmp_path / "junk.sig"
    junk.write_text('{"mediaType": 1}')
    with pytest.raises(IntegrityError, match=r"is not an OMS v1\.0 signature: no DSSE envelope"):
        verify_model_signature(model, junk, [public_pem(key)])
    with pytest.raises(IntegrityError, match="nested deeper"):
        parse_bundle(b"[" * 1000 + b"]" * 1000)
    with pytest.raises(ConfigError, match="does not exist"):
        verify_model_signature(model, tmp_path / "none.sig", [public_pem(key)])
    with pytest.raises(ConfigError, match="would be inside the model folder"):
        write_bundle(model, key, model / "model.sig")
    write_bundle(model, key)
    with pytest.raises(ConfigError, match="already exists; use --force"):
        write_bundle(model, key)
    secp256k1 = tmp_path / "k1.pub"
    secp256k1.write_bytes(public_pem(ec.generate_private_key(ec.SECP256K1())))
    with pytest.raises(ConfigError, match="is not an ECDSA P-256 or P-384 key"):
        load_public_key(secp256k1)


def test_sign_model_returns_the_bundle(model: Path, key) -> None:
    bundle = json.loads(sign_model(model, key))
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == key_hint(public_pem(key))


def test_export_format_oms_signs_the_certified_files(tmp_path: Path, key) -> None:
    from provenance.certificate import to_json
    from provenance.export import FORMATS, Subject, export

    from .test_certificate import sample_certificate
    from .test_keys_cli import run

    assert "oms" in FORMATS
    certificate = sample_certificate(tmp_path)
    model = tmp_path / "model"  # what sample_certificate's manifest certifies
    model.mkdir()
    (model / "model.pkl").write_bytes(b"abc")
    (model / "README").write_bytes(b"")
    bundle = tmp_path / "exported.sig"
    bundle.write_bytes(export(Subject.of(certificate, model_files=model), "oms", signing_key=key))
    public = _public_file(tmp_path, key)
    verifying.Config().use_elliptic_key_verifier(public_key=public).verify(model, bundle)
    signed = verify_model_signature(model, bundle, [public_pem(key)])
    verify_covers(signed, certificate.model.manifest, model, bundle)
    with pytest.raises(ConfigError, match="give --model-files"):
        export(Subject.of(certificate), "oms", signing_key=key)
    with pytest.raises(ConfigError, match="give --signing-key"):
        export(Subject.of(certificate, model_files=model), "oms")

    # the command line: export, then oms verify against the certificate
    (tmp_path / "cert.json").write_text(to_json(certificate))
    (tmp_path / "pw").write_text("password-1\n")
    done = run("export", "cert.json", "--format", "oms", "--model-files", "model",
               "--signing-key", "oms.pem", "--password-file", "pw", "-o", "model.sig",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    checked = run("oms", "verify", "model", "--public-key", "k.pub", "--certificate",
                  "cert.json", "--json", cwd=tmp_path)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["files"] == {
        "README": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "model.pkl": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    }
    (model / "model.pkl").write_bytes(b"abd")
    changed = run("export", "cert.json", "--format", "oms", "--model-files", "model",
                  "--signing-key", "oms.pem", "--password-file", "pw", cwd=tmp_path)  # fmt: skip
    assert changed.returncode == 1 and changed.stdout == ""
    assert changed.stderr.startswith("error: ") and "model.pkl has 3 bytes" in changed.stderr
    assert "Traceback" not in changed.stderr


def test_oms_cli_key_sign_verify(tmp_path: Path) -> None:
    from .test_keys_cli import run

    (tmp_path / "pw").write_text("password-1\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"w")
    made = run("oms", "key", "new", "k.pem", "--p384", "--password-file", "pw", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    again = run("oms", "key", "new", "k.pem", "--password-file", "pw", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip() == "error: k.pem already exists; a signing key is never overwritten"
    signed = run("oms", "sign", "model", "--key", "k.pem", "--password-file", "pw", cwd=tmp_path)
    assert signed.returncode == 0, signed.stderr
    assert (tmp_path / "model.sig").is_file()
    ok = run("oms", "verify", "model", "--public-key", "k.pem.pub", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "model" / "extra.py").write_text("x")
    bad = run("oms", "verify", "model", "--public-key", "k.pem.pub", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: model: extra.py is not covered by the OMS bundle model.sig"
    help_text = run("export", "--help", cwd=tmp_path).stdout
    assert "oms" in help_text


def test_trusted_oms_keys_from_the_config(tmp_path: Path, key) -> None:
    from provenance.config import load_config
    from provenance.verify.policy import policy_from_config

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "oms.pub").write_bytes(public_pem(key))
    (tmp_path / "provenance.toml").write_text('[trust]\noms_keys = ["keys/oms.pub"]\n')
    config = load_config({}, cwd=tmp_path / "keys", explicit=tmp_path / "provenance.toml")
    assert config.trust.oms_keys == ((tmp_path / "keys" / "oms.pub").resolve(),)
    assert policy_from_config(config).oms_keys == (public_pem(key),)
    (tmp_path / "provenance.toml").write_text('[trust]\noms_keys = ["keys/none.pub"]\n')
    config = load_config({}, cwd=tmp_path, explicit=tmp_path / "provenance.toml")
    with pytest.raises(ConfigError, match="cannot read OMS public key"):
        policy_from_config(config)
