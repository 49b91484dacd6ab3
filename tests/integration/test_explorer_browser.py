"""The explorer in Debian's chromium (Playwright, no browser download): search, model page,
the coloured family tree, a click on a parent, a screenshot of the tree."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from eth_account import Account
from eth_utils.crypto import keccak

from provenance.attest import Batch, OutputRecord
from provenance.certificate import body_of, load_certificate
from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.chain.deploy import Deployment
from provenance.chain.index import LineageIndex
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.cli.registry import certificate_registration
from provenance.lineage import FILL
from provenance.server.explorer import create_explorer_app
from provenance.stack import Stack, free_port
from provenance.storage import Kubo

from .chainutil import ADMIN
from .test_registry_cli import certificate, cli_json
from .test_stack import PROVENANCE, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"


@dataclass(frozen=True)
class Site:
    url: str
    ids: dict[str, str]  # name -> model id


@pytest.fixture(scope="module")
def site(
    stack: Stack, stack_config_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """Browser A (revoked) -> Browser B (fine-tune) -> Browser C (merge): certificates in the
    stack's kubo, registered through the CLI; the explorer on a free port in a thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENANCE_", "DOCKER_HOST"))}
    env["PROVENANCE_CONFIG"] = str(stack_config_path)
    folder = tmp_path_factory.mktemp("explorer")
    kubo = Kubo(stack.config.ipfs.api)
    ids: dict[str, str] = {}
    paths: dict[str, Path] = {}
    for name, parents in (
        ("Browser A", []),
        ("Browser B", [("Browser A", "fine-tune")]),
        ("Browser C", [("Browser B", "merge")]),
    ):
        links = [{"id": ids[p], "relation": r} for p, r in parents]
        path = certificate(folder, name, links)
        kubo.put_bytes(body_of(load_certificate(path)).canonical_bytes())
        ids[name] = str(cli_json(env, "register", str(path))["id"])
        paths[name] = path

    w3 = connect(stack.config.chain.rpc_url)
    deployment = Deployment.read(stack.config.deployment_file)
    assert deployment is not None
    # a node of B's attests one output (before A is revoked: then B could not authorise nodes)
    owner = AttestorContract(
        w3, deployment.contracts["OutputAttestor"].address, Transactor(w3, ADMIN)
    )
    node = Account.create()
    b_id, b_reg = (
        bytes.fromhex(ids["Browser B"][2:]),
        certificate_registration(paths["Browser B"], False)[0],
    )
    owner.authorize_node(b_id, node.address, b_reg, keccak(text="explorer-test-image"))
    record = OutputRecord(
        b_id,
        b_reg.model_digest,
        hashlib.sha256(b"input").digest(),
        hashlib.sha256(b"output").digest(),
        owner.next_sequence(node.address),
        int(time.time()),
    )
    owner.attest(record, owner.sign(node, Batch.of_one(record)))

    result = run_cli("revoke", ids["Browser A"], "--reason", "poisoned", "--yes", env=env)
    assert result.returncode == 0, result.stderr
    registry_record = deployment.contracts["ModelRegistry"]
    registry = Registry(w3, registry_record.address, from_block=registry_record.block)
    attestor = AttestorContract(w3, deployment.contracts["OutputAttestor"].address)
    index = LineageIndex(folder / "index.sqlite")
    index.sync(registry)
    app = create_explorer_app(registry, index, kubo, attestor)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the explorer did not start"
        time.sleep(0.05)
    try:
        yield Site(f"http://127.0.0.1:{port}", ids)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        index.close()
        kubo.close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def test_the_api(site: Site) -> None:
    a, b, c = (site.ids[f"Browser {x}"] for x in "ABC")
    model = get_json(f"{site.url}/api/models/{b}")
    assert (model["name"], model["status"], model["on_chain_status"]) == (
        "Browser B",
        "tainted",
        "active",
    )
    assert model["parents"] == [
        {"id": a, "relation": "fine-tune", "name": "Browser A", "status": "revoked"}
    ]
    assert model["children"] == [
        {"id": c, "relation": "merge", "name": "Browser C", "status": "tainted"}
    ]
    assert model["certificate"]["model_name"] == "Browser B"
    assert model["certificate"]["data"]["datasets"][0]["name"] == "train"
    assert [m["id"] for m in get_json(f"{site.url}/api/search?q=browser%20b")] == [b]
    assert [m["id"] for m in get_json(f"{site.url}/api/search?q={a[:12]}")] == [a]
    by_digest = get_json(f"{site.url}/api/search?q={model['model_digest']}")
    assert [m["id"] for m in by_digest] == [b]
    attested = get_json(f"{site.url}/api/models/{b}/attestations")
    assert [(x["model"], x["count"], x["first_sequence"]) for x in attested["batches"]] == [
        (b, 1, 0)
    ]
    assert [n["model"] for n in attested["nodes"]] == [b]
    assert attested["batches"][0]["node"] == attested["nodes"][0]["node"]
    report = get_json(f"{site.url}/api/models/{b}/verification")
    assert report["ok"] is False  # tainted: its parent is revoked
    assert {"registered", "lineage"} <= {check["name"] for check in report["checks"]}
    with pytest.raises(urllib.error.HTTPError) as info:
        get_json(f"{site.url}/api/models/0x{'ab' * 32}")
    assert info.value.code == 404
    assert json.load(info.value) == {"detail": f"model 0x{'ab' * 32} is not registered"}


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_search_model_page_tree_and_navigation(site: Site, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    a, b, c = (site.ids[f"Browser {x}"] for x in "ABC")
    expected = {a: "revoked", b: "tainted", c: "tainted"}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(site.url + "/")
            page.fill("#q", "Browser B")
            page.press("#q", "Enter")
            page.locator(".result a", has_text="Browser B").click()
            page.wait_for_url(f"{site.url}/models/{b}")
            expect(page.locator("#name")).to_have_text("Browser B")  # filled in by the page
            expect(page.locator("#status")).to_have_text("tainted")

            page.wait_for_selector("#tree svg g.node")
            nodes = page.eval_on_selector_all(
                "#tree svg g.node",
                """gs => gs.map(g => ({id: g.id, cls: g.getAttribute('class'),
                    fill: g.querySelector('path, polygon').getAttribute('fill')}))""",
            )
            assert len(nodes) == 3
            for node in nodes:
                model = node["id"].removeprefix("model-")
                assert f"status-{expected[model]}" in node["cls"].split()
                assert node["fill"] == FILL[expected[model]]  # type: ignore[index]

            page.hover(f'[id="model-{c}"]')
            assert page.locator(f'[id="edge-{b}-{c}"]').get_attribute("class") == (
                "edge relation-merge hover"
            )

            tree = page.locator("#tree")
            box = tree.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 200
            shot = tmp_path / "tree.png"
            tree.screenshot(path=str(shot))
            png = shot.read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
            colours = page.evaluate(
                """async data => {
                    const img = new Image();
                    img.src = 'data:image/png;base64,' + data;
                    await img.decode();
                    const canvas = document.createElement('canvas');
                    canvas.width = img.width; canvas.height = img.height;
                    const ctx = canvas.getContext('2d');
                    ctx.drawImage(img, 0, 0);
                    const px = ctx.getImageData(0, 0, img.width, img.height).data;
                    const seen = new Set();
                    for (let i = 0; i < px.length; i += 4 * 7) seen.add(px[i] << 16 | px[i+1] << 8 | px[i+2]);
                    return seen.size;
                }""",
                base64.b64encode(png).decode(),
            )
            assert colours > 10  # the coloured tree, not a blank box
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

            page.wait_for_selector("#verification table")
            assert "not verified" in page.locator("#verification").inner_text()

            assert "Attested output batches (1)" in page.locator("#attestations").inner_text()

            page.click(f'[id="model-{a}"] a')
            page.wait_for_url(f"{site.url}/models/{a}")
            expect(page.locator("#name")).to_have_text("Browser A")  # filled in by the page
            expect(page.locator("#status")).to_have_text("revoked")
            page.wait_for_selector("#tree svg g.node")
            assert page.locator("#tree svg g.node").count() == 3
        finally:
            browser.close()


def test_the_explorer_command(site: Site, cli_env: dict[str, str]) -> None:
    """`provenance explorer` serves the configured stack (until it is stopped)."""
    port = free_port()
    a = site.ids["Browser A"]
    process = subprocess.Popen(
        [str(PROVENANCE), "explorer", "--port", str(port)],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                found = get_json(f"http://127.0.0.1:{port}/api/search?q={a}")
                break
            except urllib.error.URLError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "`provenance explorer` did not answer"
                time.sleep(0.2)
        assert [(m["id"], m["name"], m["status"]) for m in found] == [(a, "Browser A", "revoked")]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/models/{a}", timeout=30) as page:
            assert b'<div id="tree"' in page.read()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert f"explorer at http://127.0.0.1:{port}/" in stderr
