"""Journey: training code captures a parent and a child model with ``provenance.track`` and a
session; the parent is revoked with the CLI; the child is shown and verified as tainted."""

from __future__ import annotations

import json
import textwrap

from .conftest import Journey

TRAINING = textwrap.dedent(
    """
    from pathlib import Path

    import provenance

    with provenance.connect() as session:
        with provenance.track(
            "Track parent", session=session, output_dir=Path("parent"), environment=False
        ) as parent:
            parent.log_params(epochs=3)
            Path("parent.joblib").write_bytes(b"parent weights")
            parent.log_model(Path("parent.joblib"))
        parent_id = "0x" + parent.registered.id.hex()
        with provenance.track(
            "Track child",
            session=session,
            parents=[(parent_id, "fine-tune")],
            output_dir=Path("child"),
            environment=False,
        ) as child:
            Path("child.joblib").write_bytes(b"child weights")
            child.log_model(Path("child.joblib"))
    print(parent_id, "0x" + child.registered.id.hex(), child.cid)
    """
)


def test_track_a_parent_and_child_then_revoking_the_parent_taints_the_child(
    journey: Journey,
) -> None:
    work = journey.folder("training")
    trained = journey.python(TRAINING, cwd=work)
    assert trained.returncode == 0, trained.stderr[-3000:]
    parent_id, child_id, child_cid = trained.stdout.split()
    # the session stored both certificates in the stack's kubo: verifiable by id elsewhere
    auditor = journey.folder("auditor")
    clean = journey.ok("verify", child_id, "--fetch-timeout", "5", cwd=auditor)
    assert "tainted" not in clean.stdout.lower()

    # revoke asks before a permanent act; without a terminal, --yes answers
    journey.ok("revoke", parent_id, "--reason", "leaked test data", "--yes", cwd=auditor)

    shown = json.loads(journey.ok("show", child_id, "--json", cwd=auditor).stdout)
    assert shown["status"] == "active" and shown["tainted"] is True
    assert shown["parents"] == [{"id": parent_id, "relation": "fine-tune", "name": "Track parent"}]
    verified = journey.run("verify", child_id, "--fetch-timeout", "5", cwd=auditor)
    assert verified.returncode == 1, (verified.stdout, verified.stderr)
    assert "tainted" in (verified.stdout + verified.stderr).lower()
    assert child_cid.startswith("bafkrei")
