"""Checkpoints with several signature lines under the log's name (C2SP signed-note,
static-ct-api): the tree head is the RFC 6962 note signature, chosen by its key ID, which
commits to the signature type 0x05 and the log's RFC 6962 LogID, never by name alone."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from pinlab.ct import BackfillOptions, LogMisbehaviourError, backfill_static
from pinlab.ct.sth import SignedTreeHead, checkpoint_text, parse_checkpoint
from pinlab.store import Store
from pinlab.testbed.ctlog import LocalLog
from pinlab.testbed.ctserver import StaticServer
from pinlab.testbed.pki import CA
from tests.ct.conftest import clock

ORIGIN = "127.0.0.1/lines"
DASH = "\u2014 "
TIMESTAMP = 1_790_326_039_607


def _key_id(name: str, kind: int, key: bytes) -> bytes:
    """signed-note: SHA-256(key name || 0x0A || signature type || key material)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + key).digest()[:4]


def _line(name: str, raw: bytes) -> str:
    return f"{DASH}{name} {base64.b64encode(raw).decode()}\n"


def _ed25519_lines(body: str) -> str:
    """An Ed25519 note signature (type 0x01) and a cosignature/v1 (type 0x04), both under
    the log's name, as logs and their witnesses add them."""
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    note = _line(ORIGIN, _key_id(ORIGIN, 0x01, public) + private.sign(body.encode()))
    stamp = 1_790_000_000
    message = f"cosignature/v1\ntime {stamp}\n{body}".encode()
    cosigned = _key_id(ORIGIN, 0x04, public) + stamp.to_bytes(8, "big") + private.sign(message)
    return note + _line(ORIGIN, cosigned)


_HEADS: dict[int, SignedTreeHead] = {}


def _checkpoint(log: LocalLog, *, before: str = "", after: str = "") -> str:
    """The log's checkpoint with extra signature lines before and after its own (one
    tree head per log: ECDSA signatures differ each time they are made)."""
    sth = _HEADS.setdefault(id(log), log.sth(timestamp=TIMESTAMP))
    text = checkpoint_text(ORIGIN, sth, log.key.log_id)
    body, _, own = text.partition("\n\n")
    return f"{body}\n\n{before}{own}{after}"


@pytest.fixture(scope="module")
def log() -> LocalLog:
    root = CA.root("Lines Root")
    log = LocalLog()
    for index in range(3):
        leaf = root.issue_leaf(f"l{index}.test").der
        log.add_certificate(leaf, (root.der,), timestamp=TIMESTAMP - 10_000 + index)
    return log


def test_the_rfc_6962_line_is_found_among_ed25519_lines(log: LocalLog) -> None:
    body = _checkpoint(log).partition("\n\n")[0] + "\n"
    text = _checkpoint(log, before=_ed25519_lines(body))
    for key in (None, log.key):
        origin, sth = parse_checkpoint(text, key=key)
        assert (origin, sth.tree_size, sth.timestamp) == (ORIGIN, 3, TIMESTAMP)
        assert sth == _HEADS[id(log)]


def test_lines_are_chosen_by_key_id_not_by_name(log: LocalLog) -> None:
    """An RFC 6962-shaped signature under the log's name but another key ID (another
    log's key): with the key it is ignored; without, two candidates are ambiguous."""
    other = LocalLog()
    impostor = checkpoint_text(ORIGIN, other.sth(0, timestamp=1), other.key.log_id)
    impostor_line = impostor.partition("\n\n")[2]
    text = _checkpoint(log, before=impostor_line)
    assert parse_checkpoint(text, key=log.key)[1].timestamp == TIMESTAMP
    with pytest.raises(LogMisbehaviourError, match="different key IDs"):
        parse_checkpoint(text, key=None)
    renamed = _checkpoint(log).replace(f"{DASH}{ORIGIN} ", f"{DASH}elsewhere.test/log ")
    with pytest.raises(LogMisbehaviourError, match="no RFC 6962 note signature"):
        parse_checkpoint(renamed, key=log.key)
    with pytest.raises(LogMisbehaviourError, match="no RFC 6962 note signature"):
        parse_checkpoint(renamed, key=None)


def test_extension_lines_are_refused(log: LocalLog) -> None:
    """static-ct-api: a checkpoint signed with an RFC 6962 signature has no extension
    lines."""
    body, _, signatures = _checkpoint(log).partition("\n\n")
    with pytest.raises(LogMisbehaviourError, match="extension lines"):
        parse_checkpoint(f"{body}\nextra\n\n{signatures}", key=log.key)


def test_a_static_backfill_reads_the_tree_head_from_the_right_line(
    tmp_path: Path, log: LocalLog
) -> None:
    tiles = log.write_tiles(tmp_path / "tiles", origin=ORIGIN)
    body = _checkpoint(log).partition("\n\n")[0] + "\n"
    (tiles / "checkpoint").write_text(_checkpoint(log, before=_ed25519_lines(body)))
    with StaticServer(tiles) as static:
        for key in (None, log.key):
            with Store.open(tmp_path / f"{key is None}.duckdb") as store:
                result = backfill_static(
                    store, static.url, key=key, domains=None,
                    options=BackfillOptions(retries=0, backoff=0.0, verify=key is not None),
                    clock=clock,
                )  # fmt: skip
                assert result.stats.observations == 3
                state = store.connection.execute(
                    "SELECT tree_size, sth_timestamp FROM ct_state"
                ).fetchone()
            assert state == (3, TIMESTAMP)
