"""`provenance verify MODEL` with an OMS bundle beside the model files, and `provenance oms`,
against the real stack: a model made by provenance.track and registered on anvil, its
certificate in kubo; the bundle signed by our CLI and checked by model_signing too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import verifying
from web3 import Web3

from provenance.chain.client import connect
from provenance.export.oms import key_hint
from provenance.export.signing_keys import new_signing_key, public_pem
from provenance.stack import Stack
from provenance.storage import Kubo

from .chainutil import ALICE
from .test_stack import run_cli
from .test_verify import failing, registry_of, train, verify_cli

pytestmark = pytest.mark.integration


def test_verify_reports_the_oms_signature(
    stack: Stack, stack_config_path: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w3: Web3 = connect(stack.config.chain.rpc_url)
    with Kubo(stack.config.ipfs.api) as kubo:
        alpha = train(
            tmp_path, "oms", registry=registry_of(stack, w3, ALICE), storage=kubo, C=0.625
        )
    model = alpha.model  # oms/model.pkl (a C of its own: a digest no other test registers); its bundle: model.pkl.sig beside it
    bundle = model.parent / "model.pkl.sig"
    keys = tmp_path / "keys"
    keys.mkdir()
    password = tmp_path / "password"
    password.write_text("oms-password\n")

    code, report = verify_cli(cli_env, str(model), "--trust", ALICE.address)
    assert code == 0, report
    assert report["checks"][1]["name"] == "oms-signature"
    assert report["checks"][1]["status"] == "skip"
    assert report["checks"][1]["detail"] == "no OMS bundle beside the files (model.pkl.sig)"

    made = run_cli("oms", "key", "new", str(keys / "oms.pem"), "--password-file", str(password),
                   env=cli_env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    signed = run_cli("oms", "sign", str(model), "--key", str(keys / "oms.pem"),
                     "--password-file", str(password), env=cli_env)  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert bundle.is_file()
    # model_signing's own verifier accepts what our CLI wrote
    verifying.Config().use_elliptic_key_verifier(public_key=keys / "oms.pem.pub").verify(
        model, bundle
    )
    checked = run_cli("oms", "verify", str(model), "--public-key", str(keys / "oms.pem.pub"),
                      "--certificate", str(model.parent / "certificate.json"), env=cli_env)  # fmt: skip
    assert checked.returncode == 0, checked.stderr

    # a bundle but no trusted key: a warning, the report still passes
    code, report = verify_cli(cli_env, str(model), "--trust", ALICE.address)
    assert code == 0, report
    assert (report["checks"][1]["name"], report["checks"][1]["status"]) == (
        "oms-signature",
        "warn",
    )

    # trusted by --oms-key
    code, report = verify_cli(
        cli_env, str(model), "--trust", ALICE.address, "--oms-key", str(keys / "oms.pem.pub")
    )
    assert code == 0, report
    hint = key_hint((keys / "oms.pem.pub").read_bytes())
    assert report["checks"][1] == {
        "name": "oms-signature",
        "status": "pass",
        "subject": str(model),
        "detail": f"{bundle} (OMS v1.0) is signed by a trusted key (hint {hint[:16]}) and "
        "covers exactly the 1 certified file(s)",
        "required": True,
        "error": None,
    }

    # trusted by [trust] oms_keys (a path relative to the config file)
    config = stack_config_path.parent / "oms.toml"
    relative = os.path.relpath(keys / "oms.pem.pub", config.parent)
    config.write_text(
        stack_config_path.read_text() + f'\n[trust]\noms_keys = ["{relative}"]\n', encoding="utf-8"
    )
    code, report = verify_cli({**cli_env, "PROVENANCE_CONFIG": str(config)}, str(model), "--trust",
                              ALICE.address)  # fmt: skip
    assert code == 0, report
    assert report["checks"][1]["status"] == "pass"

    # another key signed it: the report fails on oms-signature, exit 1
    other = new_signing_key(keys / "other.pem", "password-2")
    resigned = run_cli("oms", "sign", str(model), "--key", str(keys / "other.pem"), "--force",
                       "--password-file", str(password), env=cli_env)  # fmt: skip
    assert resigned.returncode == 1 and "cannot be opened" in resigned.stderr  # wrong password
    (tmp_path / "password2").write_text("password-2")
    resigned = run_cli("oms", "sign", str(model), "--key", str(keys / "other.pem"), "--force",
                       "--password-file", str(tmp_path / "password2"), env=cli_env)  # fmt: skip
    assert resigned.returncode == 0, resigned.stderr
    code, report = verify_cli(
        cli_env, str(model), "--trust", ALICE.address, "--oms-key", str(keys / "oms.pem.pub")
    )
    assert code == 1
    assert failing(report) == (
        "oms-signature",
        f"OMS bundle {bundle} is signed by a key that is not trusted "
        f"(key hint {key_hint(public_pem(other))[:16]})",
    )
    assert report["first_failure"]["error"] == "IntegrityError"
    oms_verify = run_cli("oms", "verify", str(model), "--public-key", str(keys / "oms.pem.pub"),
                         env=cli_env)  # fmt: skip
    assert oms_verify.returncode == 1
    assert oms_verify.stderr.strip().startswith("error: OMS bundle")
    assert "Traceback" not in oms_verify.stderr
    assert isinstance(other, ec.EllipticCurvePrivateKey)
