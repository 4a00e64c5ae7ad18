"""The collector against real servers on loopback: nginx, openssl s_server, hostile ones."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from pinlab.collect import CollectOptions, Target, collect
from pinlab.store import Observation, Scan, Store, StoreError
from pinlab.testbed.loopback import openssl_server
from pinlab.testbed.pki import CA, KeyType
from pinlab.verify import TrustStore
from tests.collect.conftest import Farm
from tests.collect.hostile import (
    HostileServer,
    close_mid_handshake,
    garbage,
    silent,
    trickle,
)

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def _clock() -> datetime:
    return NOW


def _run(
    tmp_path: Path, targets: list[Target], *, trust: TrustStore, **options: object
) -> tuple[Store, dict[tuple[object, ...], Observation], list[Observation]]:
    store = Store.open(tmp_path / "store.duckdb")
    scan = Scan(uuid.uuid4().hex, "scan", None, None, "{}", NOW, None, "test")
    store.add_scan(scan)
    seen: list[Observation] = []
    summary = collect(
        targets, store, scan, clock=_clock, options=CollectOptions(**options),  # type: ignore[arg-type]
        trust_store=trust, observer=seen.append,
    )  # fmt: skip
    assert summary.observations == len(targets)
    frame = store.observations_df()
    rows = {}
    for record in frame.to_dict("records"):
        record["chain"] = tuple(record["chain"])
        key = (record["host"], record["port"], record["sni"], record["target_ip"])
        rows[key] = record
    return store, rows, seen  # type: ignore[return-value]


def test_nginx_farm_chains_captured_in_order(tmp_path: Path, farm: Farm) -> None:
    targets = [Target(name, farm.nginx.port, name, "127.0.0.1") for name in farm.chains]
    trust = TrustStore.from_certificates([farm.root.record], name="farm")
    store, rows, seen = _run(tmp_path, targets, trust=trust, timeout=5, per_ip=8, concurrency=20)
    assert len(seen) == len(targets)
    for target in targets:
        row = rows[target.key]
        assert row["status"] == "ok", row
        assert row["chain"] == farm.chains[target.host]
        assert row["tls_version"] == "TLSv1.3"
        assert row["ip"] == "127.0.0.1"
        # A leaf sent alone lacks its intermediate: collected anyway, judged separately.
        expected = "untrusted" if len(row["chain"]) == 1 else "valid"
        assert row["validation"] == expected, row
    lengths = {len(chain) for chain in farm.chains.values()}
    assert lengths == {1, 2, 3, 4}
    certificates = store.certificates_df()
    assert set(certificates["key_type"]) == {"RSA", "EC"}
    distinct = {digest for chain in farm.chains.values() for digest in chain}
    assert set(certificates["sha256"]) == distinct
    store.close()


def test_no_sni_gets_the_default_certificate(tmp_path: Path, farm: Farm) -> None:
    first = next(iter(farm.chains))
    targets = [Target("127.0.0.1", farm.nginx.port, None)]
    _, rows, _ = _run(tmp_path, targets, trust=TrustStore.certifi(), timeout=5)
    row = rows[targets[0].key]
    assert row["chain"] == farm.chains[first]
    assert row["validation"] == "untrusted"


def _malformed_leaf() -> tuple[bytes, bytes, bytes]:
    root = CA.root("Malformed Root")
    leaf = root.issue_leaf("bad.test", key_type=KeyType.P256)
    der = bytearray(leaf.der)
    position = der.find(b"\x17\x0d")  # notBefore UTCTime: make its month 13
    der[position + 4 : position + 6] = b"13"
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(der))
    return pem + b"-----END CERTIFICATE-----\n", leaf.key_pem, bytes(der)


def test_hostile_servers_and_s_server(tmp_path: Path) -> None:
    root = CA.root("Long Root")
    cas = [root]
    for depth in range(28):
        cas.append(cas[-1].child_ca(f"Long Intermediate {depth}"))
    long_leaf = cas[-1].issue_leaf("long.test")
    long_chain = b"".join(ca.cert_pem for ca in reversed(cas))
    bad_pem, bad_key, bad_der = _malformed_leaf()
    with (
        openssl_server(long_leaf.cert_pem, long_leaf.key_pem, chain_pem=long_chain) as long_port,
        openssl_server(bad_pem, bad_key) as bad_port,
        HostileServer(silent) as silent_port,
        HostileServer(garbage) as garbage_port,
        HostileServer(close_mid_handshake) as closing_port,
        HostileServer(trickle) as trickle_port,
    ):
        named = {
            "long": long_port, "malformed": bad_port, "silent": silent_port,
            "garbage": garbage_port, "closing": closing_port, "trickle": trickle_port,
        }  # fmt: skip
        targets = [Target(f"{n}.test", p, f"{n}.test", "127.0.0.1") for n, p in named.items()]
        targets.append(Target("127.0.0.1", 1, None))  # nothing listens on port 1
        store, rows, _ = _run(
            tmp_path, targets, trust=TrustStore.certifi(), timeout=1.0, retries=1, backoff=0.05
        )
    by_name = {host.split(".")[0]: row for (host, *_), row in rows.items()}
    assert by_name["long"]["status"] == "ok"
    assert len(by_name["long"]["chain"]) == 30
    assert by_name["long"]["chain"][0] == long_leaf.record.sha256
    assert by_name["malformed"]["status"] == "malformed_certificate"
    assert "certificate 0 of 1" in by_name["malformed"]["error"]
    stored = store.connection.execute(
        "SELECT der, parse_error IS NOT NULL FROM certificates WHERE sha256 = ?",
        [by_name["malformed"]["chain"][0]],
    ).fetchone()
    assert stored == (bad_der, True)
    assert by_name["silent"]["status"] == "timeout"
    assert by_name["silent"]["attempts"] == 2  # timeouts are retried once
    assert by_name["trickle"]["status"] == "timeout"
    assert by_name["garbage"]["status"] == "protocol_error"
    assert by_name["closing"]["status"] == "reset"
    assert by_name["closing"]["attempts"] == 2
    assert by_name["127"]["status"] == "refused"
    assert by_name["127"]["attempts"] == 1  # a refusal is an answer, not retried
    for row in rows.values():
        assert row["error"] or row["status"] == "ok"
    store.close()


@pytest.mark.parametrize("rate", [20.0])
def test_rate_and_per_ip_limits(tmp_path: Path, farm: Farm, rate: float) -> None:
    names = list(farm.chains)[:10]
    targets = [Target(name, farm.nginx.port, name, "127.0.0.1") for name in names]
    store = Store.open(tmp_path / "store.duckdb")
    scan = Scan("rate", "scan", None, None, "{}", NOW, None, "test")
    store.add_scan(scan)
    summary = collect(
        targets, store, scan, clock=_clock, trust_store=TrustStore.certifi(),
        options=CollectOptions(rate=rate, per_ip=1, timeout=5),
    )  # fmt: skip
    assert summary.statuses == {"ok": 10}
    assert summary.elapsed >= (len(targets) - 1) / rate * 0.9
    store.close()


def test_a_failing_store_stops_the_campaign_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "store.duckdb")
    scan = Scan("broken", "scan", None, None, "{}", NOW, None, "test")
    store.add_scan(scan)

    def broken(*_: object, **__: object) -> None:
        raise duckdb.IOException("disk full")

    monkeypatch.setattr(store, "write", broken)
    targets = [Target("127.0.0.1", 1, f"h{i}.test", None) for i in range(3000)]
    with pytest.raises(StoreError, match="disk full"):
        collect(
            targets, store, scan, clock=_clock, trust_store=TrustStore.certifi(),
            options=CollectOptions(per_ip=100, timeout=1, batch_size=10),
        )  # fmt: skip
    unfinished = store.connection.execute("SELECT finished_at IS NULL FROM scans").fetchone()
    assert unfinished == (True,)  # left for --resume
    store.close()
