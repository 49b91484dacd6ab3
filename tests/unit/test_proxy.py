"""The proxy's pure parts: which headers pass, the ``wait`` parameter, the sidecar's token and
request, and `verify-output` given digests or the expected model; and its recorder, journaling
for the event loop in batches (offline, no services: a journal on disk, no chain)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address

from provenance.attest import Attestor, Batch, CommitStats, OutputRecord, Receipt, batch_typed_data
from provenance.errors import ConfigError, ServiceError, StorageError
from provenance.proxy import (
    AttestationRefused,
    Recorder,
    Token,
    Upstream,
    parse_attestation,
    pass_on,
    query_without_wait,
)

PROVENANCE = Path(sys.executable).parent / "provenance"
GOOD = "sha256:" + "ab" * 32


def test_hop_by_hop_and_provenance_headers_never_pass() -> None:
    headers = [
        (b"Content-Type", b"application/json"),
        (b"Connection", b"keep-alive, X-Secret-Hop"),
        (b"x-secret-hop", b"1"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"websocket"),
        (b"TE", b"trailers"),
        (b"Proxy-Authorization", b"Basic eA=="),
        (b"X-Provenance-Sequence", b"42"),
        (b"x-provenance-receipt", b"http://evil.example/r"),
        (b"Host", b"proxy:8701"),
        (b"Authorization", b"Bearer upstream-token"),
        (b"Accept", b"*/*"),
    ]
    assert pass_on(headers, drop=(b"host",)) == [
        (b"Content-Type", b"application/json"),
        (b"Authorization", b"Bearer upstream-token"),
        (b"Accept", b"*/*"),
    ]


@pytest.mark.parametrize(
    ("query", "rest", "wait"),
    [
        (b"", b"", False),
        (b"a=1&b=2", b"a=1&b=2", False),
        (b"wait=true", b"", True),
        (b"a=1&wait=true&b=%20x", b"a=1&b=%20x", True),
        (b"wait=false&a=1", b"a=1", False),
        (b"wait", b"", True),
        (b"wait=1", b"", True),
        (b"await=true&waiting=1", b"await=true&waiting=1", False),
    ],
)
def test_the_wait_parameter_is_the_proxys_and_the_rest_passes_byte_for_byte(
    query: bytes, rest: bytes, wait: bool
) -> None:
    assert query_without_wait(query) == (rest, wait)


def test_the_upstream_must_be_an_http_url() -> None:
    with pytest.raises(ConfigError, match=r"^the upstream 'ftp://x' is not an http:// or https://"):
        Upstream("ftp://x", max_response_bytes=10)
    with pytest.raises(ConfigError, match="must not carry a query"):
        Upstream("http://127.0.0.1:1/?a=1", max_response_bytes=10)


def test_the_token_is_compared_whole_and_never_shown() -> None:
    token = Token.of("  s3cret-s3cret-s3cret\n", source="the token file t")
    assert token.admits(b"Bearer s3cret-s3cret-s3cret")
    assert token.admits(b"bearer s3cret-s3cret-s3cret")
    assert not token.admits(None)
    assert not token.admits(b"")
    assert not token.admits(b"Bearer s3cret-s3cret-s3cre")
    assert not token.admits(b"Bearer s3cret-s3cret-s3cret-and-more")
    assert not token.admits(b"Basic s3cret-s3cret-s3cret")
    assert not token.admits(b"s3cret-s3cret-s3cret")
    assert "s3cret" not in repr(token) and "s3cret" not in str(token)


def test_a_short_or_spaced_token_is_refused_at_start() -> None:
    with pytest.raises(ConfigError) as short:
        Token.of("short\n", source="the token file t")
    assert str(short.value).startswith(
        "the token file t has 5 characters; a sidecar token needs at least 16"
    )
    with pytest.raises(ConfigError, match=r"^T must be printable ASCII without spaces$"):
        Token.of("sixteen chars and spaces", source="T")


def test_a_sidecar_request_is_two_digests() -> None:
    body = json.dumps({"input_digest": GOOD, "output_digest": "sha256:" + "cd" * 32})
    assert parse_attestation(body.encode()) == (b"\xab" * 32, b"\xcd" * 32)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "the request body is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"[1]", "the request body must be a JSON object with input_digest and output_digest"),
        (b'{"input_digest": "' + GOOD.encode() + b'"}', "output_digest missing"),
        (b"{}", "input_digest and output_digest missing"),
        (
            json.dumps({"input_digest": GOOD, "output_digest": GOOD, "sequence": 3}).encode(),
            "unknown field(s): sequence",
        ),
        (
            json.dumps({"input_digest": GOOD, "output_digest": 5}).encode(),
            "output_digest must be a string sha256:<64 hex digits>, not int",
        ),
        (
            json.dumps({"input_digest": "sha256:abc", "output_digest": GOOD}).encode(),
            "input_digest 'sha256:abc' is not of the form sha256:<64 lower-case hex digits>",
        ),
        (
            json.dumps({"input_digest": "0x" + "ab" * 32, "output_digest": GOOD}).encode(),
            f"input_digest '0x{'ab' * 32}' is not of the form sha256:<64 lower-case hex digits>",
        ),
        (
            json.dumps({"input_digest": GOOD.upper(), "output_digest": GOOD}).encode(),
            f"input_digest '{GOOD.upper()}' is not of the form sha256:<64 lower-case hex digits>",
        ),
        (
            b'{"input_digest": "x", "input_digest": "y", "output_digest": "z"}',
            "the request body has the key 'input_digest' twice in one object",
        ),
        (b"[" * 300 + b"]" * 300, "the request body is nested deeper than 256 levels"),
        (b"x" * 5000, "the request body has 5000 bytes; at most 4096 are accepted"),
    ],
)
def test_a_malformed_sidecar_request_is_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(AttestationRefused) as refused:
        parse_attestation(body)
    assert str(refused.value) == reason


# -- verify-output: raw bytes, digests, the expected model (offline) ---------------------------

TRUSTED = to_checksum_address("0x" + "aa" * 20)
MODEL = b"\x01" * 32


def _receipt(request: bytes, answer: bytes, model_id: bytes = MODEL) -> Receipt:
    node = Account.create()
    record = OutputRecord(
        model_id,
        b"\x02" * 32,
        hashlib.sha256(request).digest(),
        hashlib.sha256(answer).digest(),
        0,
        1,
    )
    batch = Batch.of_one(record)
    typed = batch_typed_data(batch, 31337, TRUSTED)
    signature = bytes(node.sign_message(encode_typed_data(full_message=typed)).signature)
    return Receipt(record, batch, (), signature, node.address, 31337, TRUSTED)


def _verify_output(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), "verify-output", "r.json", "--offline", "--attestor", TRUSTED, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_verify_output_checks_the_raw_bytes_or_their_digests(tmp_path: Path) -> None:
    request, answer = b'{"instances": [[1, 2]]}', b"\x00\xffraw answer bytes\n"
    (tmp_path / "r.json").write_text(json.dumps(_receipt(request, answer).to_json()))
    (tmp_path / "req.bin").write_bytes(request)
    (tmp_path / "resp.bin").write_bytes(answer)
    files = _verify_output(tmp_path, "--input-file", "req.bin", "--output-file", "resp.bin")
    assert files.returncode == 0, files.stdout + files.stderr
    assert "the input and output match(es) its digests" in files.stdout
    digests = _verify_output(
        tmp_path,
        "--input-digest",
        "sha256:" + hashlib.sha256(request).hexdigest(),
        "--output-digest",
        "sha256:" + hashlib.sha256(answer).hexdigest(),
        "--model-id",
        "0x" + MODEL.hex(),
    )
    assert digests.returncode == 0, digests.stdout + digests.stderr
    assert f"model 0x{MODEL.hex()} as expected" in digests.stdout
    # the answer a client stored, altered by one byte
    (tmp_path / "resp.bin").write_bytes(answer[:-1] + b"!")
    altered = _verify_output(tmp_path, "--output-file", "resp.bin")
    assert altered.returncode == 1
    assert altered.stderr == (
        "error: receipt: the output does not match the receipt's output digest "
        f"0x{hashlib.sha256(answer).hexdigest()}\n"
    )
    wrong = _verify_output(tmp_path, "--output-digest", "sha256:" + "00" * 32)
    assert wrong.returncode == 1
    assert wrong.stderr == (
        f"error: receipt: the output digest sha256:{'00' * 32} is not the receipt's "
        f"0x{hashlib.sha256(answer).hexdigest()}\n"
    )


def test_a_receipt_of_another_model_does_not_verify_for_this_one(tmp_path: Path) -> None:
    other = b"\x09" * 32
    request, answer = b"in", b"out"
    (tmp_path / "r.json").write_text(json.dumps(_receipt(request, answer, other).to_json()))
    (tmp_path / "resp.bin").write_bytes(answer)
    done = _verify_output(tmp_path, "--output", "resp.bin", "--model-id", "0x" + MODEL.hex())
    assert done.returncode == 1
    assert done.stderr == (
        f"error: receipt: the receipt is for model 0x{other.hex()}, not the expected "
        f"0x{MODEL.hex()}\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--output", "resp.bin", "--output-digest", GOOD),
            "error: give the output file or its digest, not both",
        ),
        (
            ("--output-digest", "sha256:xyz"),
            "error: --output-digest 'sha256:xyz' is not of the form sha256:<64 hex digits>",
        ),
        (
            ("--output-digest", GOOD, "--model-id", "0x1234"),
            "error: --model-id '0x1234': offline, give the full id (0x and 64 hex digits)",
        ),
    ],
)
def test_verify_output_refuses_ambiguous_or_malformed_options(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "r.json").write_text(json.dumps(_receipt(b"in", b"out").to_json()))
    (tmp_path / "resp.bin").write_bytes(b"out")
    done = _verify_output(tmp_path, *args)
    assert done.returncode == 1
    assert done.stderr.strip() == message


# ------------------------------------------------------------------------------- the recorder
class JournalOnly:
    """The chain side an Attestor reads when it opens (recording needs no chain)."""

    address = "0x" + "42" * 20

    def chain_id(self) -> int:
        return 31337

    def next_sequence(self, node: str) -> int:
        return 0


def journal_at(path: Path) -> Attestor:
    return Attestor(b"\x01" * 32, b"\x02" * 32, Account.create(), JournalOnly(), path)  # type: ignore[arg-type]


def test_the_recorder_answers_only_after_the_commit_and_batches_what_queued_meanwhile(
    tmp_path: Path,
) -> None:
    """Twenty requests arrive while the journal is busy: none is answered before the journal
    is free, they get consecutive sequences in the order they queued, with the digests of their
    bodies, in at most two commits (not one each), and they are on disk."""
    attestor = journal_at(tmp_path / "journal.sqlite")
    recorder = Recorder(attestor)

    async def scenario() -> list[OutputRecord]:
        with attestor._lock:  # the journal is busy: the writer's commit cannot finish
            tasks = []
            for i in range(20):
                tasks.append(asyncio.create_task(recorder.record(b"in %d" % i, b"out %d" % i)))
                await asyncio.sleep(0)  # queued in this order
            await asyncio.sleep(0.2)
            assert not [t for t in tasks if t.done()]
            assert attestor.next_sequence == 0
        return await asyncio.gather(*tasks)

    records = asyncio.run(scenario())
    assert [r.sequence for r in records] == list(range(20))
    for i, r in enumerate(records):
        assert r.input_digest == hashlib.sha256(b"in %d" % i).digest()
        assert r.output_digest == hashlib.sha256(b"out %d" % i).digest()
    assert attestor.journal_stats.records == 20 and attestor.journal_stats.commits <= 2
    on_disk = attestor.db.execute("SELECT seq, input FROM records ORDER BY seq").fetchall()
    assert on_disk == [(r.sequence, r.input_digest) for r in records]
    recorder.close()
    attestor.close()


def test_a_failed_commit_fails_every_request_of_its_batch_and_nothing_is_recorded(
    tmp_path: Path,
) -> None:
    attestor = journal_at(tmp_path / "journal.sqlite")
    recorder = Recorder(attestor)
    poison = hashlib.sha256(b"poison").digest()
    attestor.db.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.input = X'{poison.hex()}'"
        " BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END"
    )

    async def scenario() -> list[OutputRecord | BaseException]:
        with attestor._lock:
            first = asyncio.create_task(recorder.record(b"first", b"out"))
            await asyncio.sleep(0.2)  # the writer took it and waits for the journal
            batch = [
                asyncio.create_task(recorder.record(x, b"out")) for x in (b"a", b"poison", b"c")
            ]
            await asyncio.sleep(0.05)
        return await asyncio.gather(first, *batch, return_exceptions=True)

    first, *batch = asyncio.run(scenario())
    assert isinstance(first, OutputRecord) and first.sequence == 0
    failed = "the output journal failed, the output was not recorded: disk I/O error (simulated)"
    assert [(type(e), str(e)) for e in batch] == [(StorageError, failed)] * 3
    assert attestor.db.execute("SELECT seq FROM records").fetchall() == [(0,)]
    assert asyncio.run(recorder.record(b"after", b"out")).sequence == 1
    assert attestor.journal_stats == CommitStats(records=2, commits=2)
    recorder.close()
    attestor.close()


def test_the_recorder_refuses_malformed_digests_and_records_after_it_closed(
    tmp_path: Path,
) -> None:
    attestor = journal_at(tmp_path / "journal.sqlite")
    recorder = Recorder(attestor)
    digest = hashlib.sha256(b"x").digest()
    with pytest.raises(ValueError, match=r"^an input or output digest is 32 bytes \(SHA-256\)$"):
        asyncio.run(recorder.record_digests(digest[:31], digest))
    record = asyncio.run(recorder.record_digests(digest, digest))
    assert (record.sequence, record.input_digest, record.output_digest) == (0, digest, digest)
    recorder.close()
    with pytest.raises(
        ServiceError, match=r"^the proxy is shutting down; the output was not recorded$"
    ):
        asyncio.run(recorder.record(b"late", b"out"))
    assert attestor.next_sequence == 1
    attestor.close()
