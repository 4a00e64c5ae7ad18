"""The out-of-core replay gives the Python replay's rows, on crafted and on real histories."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pinlab.bench.history_data import generate, trust_anchors
from pinlab.certs import Certificate
from pinlab.collect import import_pem
from pinlab.pins import Semantics
from pinlab.store import CertificateRow, Observation, Scan, Store, export_dataset, open_store
from pinlab.survival import REPLAY_COLUMNS, PinSurvival, observed_chains, replay
from pinlab.survival.duckdb_engine import anchor_frame, replay_store
from pinlab.testbed.pki import CA, KeyType
from pinlab.truststores import CertifiRelease, TrustStoreHistory
from pinlab.verify import TrustStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)
KEY = ["host", "port", "sni", "lineage", "strategy", "semantics", "pinned_at"]


def _name(common: str, organisation: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
    ])  # fmt: skip


class _Writer:
    """Observations and certificates of a crafted store, written in one go."""

    def __init__(self) -> None:
        self.observations: list[Observation] = []
        self.certificates: dict[str, CertificateRow] = {}

    def serve(
        self,
        host: str,
        day: float,
        chain: list[Certificate],
        *,
        scan: str = "crafted",
        sni: str | None = None,
        status: str = "ok",
    ) -> None:
        for certificate in chain:
            self.certificates[certificate.sha256] = CertificateRow.from_certificate(certificate)
        self.observations.append(
            Observation(
                scan_id=scan, host=host, port=443, sni=host if sni is None else sni,
                ip="127.0.0.1", target_ip=None, observed_at=T0 + timedelta(days=day),
                status=status, error=None if status == "ok" else status, tls_version=None,
                cipher=None, chain=tuple(c.sha256 for c in chain) if status == "ok" else (),
                validation=None, validation_error=None, connect_ms=None, handshake_ms=None,
                attempts=1,
            )
        )  # fmt: skip

    def broken(self, host: str, day: float, leaf: Certificate, der: bytes) -> None:
        """An observation whose second certificate does not parse."""
        digest = hashlib.sha256(der).hexdigest()
        self.certificates[digest] = CertificateRow.unparsable(digest, der, "not DER")
        self.certificates[leaf.sha256] = CertificateRow.from_certificate(leaf)
        self.observations.append(
            Observation(
                scan_id="crafted", host=host, port=443, sni=host, ip="127.0.0.1", target_ip=None,
                observed_at=T0 + timedelta(days=day), status="ok", error=None,
                tls_version=None, cipher=None, chain=(leaf.sha256, digest), validation=None,
                validation_error=None, connect_ms=None, handshake_ms=None, attempts=1,
            )
        )  # fmt: skip


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrustStore]:
    """A store of hosts that exercise every rule of the replay (see the comments)."""
    root = CA.root(_name("crafted root", "Crafted Trust"))
    other_root = CA.root(_name("other root", "Other Trust"))
    lab_root = CA.root(_name("lab root", "Lab Trust"))
    rogue_root = CA.root(_name("rogue root", "Rogue"))
    first = root.child_ca(_name("issuing CA 1", "Crafted Trust"))
    second = root.child_ca(_name("issuing CA 2", "Crafted Trust"))
    other = other_root.child_ca(_name("other issuing CA", "Other Trust"))
    lab = lab_root.child_ca(_name("lab issuing CA", "Lab Trust"))
    rogue = rogue_root.child_ca(_name("issuing CA 1", "Crafted Trust"))  # same name as `first`
    # `root`'s key and name, issued by `other_root`: a cross-signed root sent along.
    cross = other_root.child_ca(root.certificate.subject, key=root.private_key)
    store_roots = TrustStore.from_certificates(
        [root.record, other_root.record], name="crafted roots"
    )
    w = _Writer()

    def leaf(issuer: CA, *hosts: str, **options: object) -> Certificate:
        return issuer.issue_leaf(*hosts, **options).record  # type: ignore[arg-type]

    # a: keeps its key over renewals, then a new key; moves between two issuing CAs of one
    # organisation (ca-set survives, intermediate-spki breaks); a timeout in between.
    key = KeyType.P256.generate()
    for day, issuer, reuse in [(0, first, True), (60, first, True), (120, second, True),
                               (180, second, False), (240, first, False)]:  # fmt: skip
        served = leaf(issuer, "a.test", key=key if reuse else None)
        w.serve("a.test", day, [served, issuer.record])
        w.serve("a.test", day + 30, [served, issuer.record])
    w.serve("a.test", 45, [], status="timeout")
    # b: sends the cross-signed root along (the verified path ends at the trusted root),
    # then moves to another organisation's CA (ca-set breaks).
    for day in (0, 90):
        w.serve("b.test", day, [leaf(first, "b.test"), first.record, cross.record])
    w.serve("b.test", 180, [leaf(other, "b.test"), other.record])
    # c: a leaf for the wrong name, an expired leaf, an untrusted (rogue) chain carrying
    # the pinned leaf key, and a chain sent without its intermediate.
    c_key = KeyType.P256.generate()
    w.serve("c.test", 0, [leaf(first, "c.test", key=c_key), first.record])
    w.serve("c.test", 30, [leaf(first, "elsewhere.test", key=c_key), first.record])
    expired = leaf(first, "c.test", key=c_key, not_after=T0 + timedelta(days=50))
    w.serve("c.test", 60, [expired, first.record])
    w.serve("c.test", 90, [leaf(rogue, "c.test", key=c_key), rogue.record])
    w.serve("c.test", 120, [leaf(first, "c.test")])
    w.serve("c.test", 150, [leaf(first, "c.test"), first.record])
    # d: a wildcard name, served under an SNI; and an IP address in its names.
    wildcard = leaf(first, "*.d.test", "192.0.2.7")
    for day in (0, 40, 80):
        w.serve("d.test", day, [wildcard, first.record], sni="www.d.test")
        w.serve("192.0.2.7", day, [wildcard, first.record], sni="")
    # e: RSA and ECDSA leaves served side by side (alternate observations): two lineages,
    # each renewed within its key type every 40 days.
    for day in range(0, 200, 40):
        pair = [leaf(second, "e.test", key_type=k) for k in (KeyType.P256, KeyType.RSA2048)]
        for offset in (0, 10, 20, 30):
            w.serve("e.test", day + offset, [pair[offset // 10 % 2], second.record])
    # k: moves from RSA leaves of one CA to a P-256 leaf of another: one lineage, and a pin
    # on the RSA key breaks at the move (day 120), not censored at the RSA leaf's last day.
    rsa_key = KeyType.RSA2048.generate()
    for day in (0, 60):
        rsa_leaf = leaf(first, "k.test", key_type=KeyType.RSA2048, key=rsa_key)
        w.serve("k.test", day, [rsa_leaf, first.record])
    w.serve("k.test", 120, [leaf(other, "k.test"), other.record])
    w.serve("k.test", 150, [leaf(other, "k.test"), other.record])
    # f: renewed daily with a fresh key, 70 times: more keys than one 64-bit mask holds.
    for day in range(70):
        w.serve("f.test", day, [leaf(first, "f.test"), first.record])
    # g: an observation whose chain holds a certificate that does not parse (skipped).
    g_leaf = leaf(first, "g.test")
    w.serve("g.test", 0, [g_leaf, first.record])
    w.broken("g.test", 10, g_leaf, b"\x30\x03\x02\x01\x00")
    w.serve("g.test", 20, [g_leaf, first.record])
    # h: a lab scan on a virtual clock, validated with its own anchors at a real time.
    validated_at = datetime(2026, 1, 1, tzinfo=UTC)
    for day in (400, 460, 520):
        w.serve("h.test", day, [leaf(lab, "h.test"), lab.record], scan="lab")
    w.certificates[lab_root.record.sha256] = CertificateRow.from_certificate(lab_root.record)
    # i: two observations at the same time, then later ones.
    i_leaf = leaf(first, "i.test")
    for day in (0, 0, 5, 10):
        w.serve("i.test", day, [i_leaf, first.record])

    path = tmp_path_factory.mktemp("crafted") / "crafted.duckdb"
    with Store.open(path) as store:
        parameters = {"trust_anchors": [lab_root.record.sha256],
                      "validated_at": validated_at.isoformat()}  # fmt: skip
        for scan_id, text in (("crafted", "{}"), ("lab", json.dumps(parameters))):
            store.add_scan(
                Scan(scan_id=scan_id, source="scan", label=scan_id, targets=None,
                     parameters=text, started_at=T0, finished_at=None, pinlab_version="test")
            )  # fmt: skip
        store.write(w.observations, w.certificates.values())
    return path, store_roots


def _reference(store: Store, trust: TrustStore | Callable[[datetime], TrustStore]) -> pd.DataFrame:
    chains = observed_chains(
        store.observations_df(), store.certificates_df(), trust_stores=trust,
        scans=store.scans_df(),
    )  # fmt: skip
    return replay(chains)


def _assert_same(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    assert list(got.columns) == REPLAY_COLUMNS
    left = expected.sort_values(KEY).reset_index(drop=True)
    right = got.sort_values(KEY).reset_index(drop=True)
    for frame in (left, right):
        for column in ("pinned_at", "broken_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
        frame["port"] = frame["port"].astype("int64")
        frame["checks"] = frame["checks"].astype("int64")
    pd.testing.assert_frame_equal(left, right, check_dtype=False, atol=1e-9)


def test_equal_under_a_root_store_that_changes(
    crafted: tuple[Path, TrustStore], tmp_path: Path
) -> None:
    """Roots enter and leave over the releases: each chain meets the store of its day."""
    path, trust = crafted
    crafted_root, other_root = trust.roots
    releases = [
        CertifiRelease("2024.1.1", T0 - timedelta(days=400), tmp_path, (crafted_root,)),
        CertifiRelease("2025.2.1", T0 + timedelta(days=31), tmp_path, (crafted_root, other_root)),
        CertifiRelease("2025.2.1b", T0 + timedelta(days=31), tmp_path, (other_root,)),
        CertifiRelease("2025.6.1", T0 + timedelta(days=150), tmp_path, (crafted_root,)),
    ]
    history = TrustStoreHistory(releases)
    with Store.open(path, read_only=True) as store:
        expected = _reference(store, history.at)  # type: ignore[arg-type]
        got = replay_store(store, trust_store=history, out=tmp_path / "out").frame()
    _assert_same(expected, got)
    with Store.open(path, read_only=True) as store:
        fixed = _reference(store, trust)
    assert len(expected[expected["semantics"] == "verified"]) < len(
        fixed[fixed["semantics"] == "verified"]
    )


@pytest.mark.parametrize("batch_rows", [1, 7, 100_000])
def test_equal_to_the_python_replay_on_crafted_histories(
    crafted: tuple[Path, TrustStore], tmp_path: Path, batch_rows: int
) -> None:
    path, trust = crafted
    with Store.open(path, read_only=True) as store:
        expected = _reference(store, trust)
        result = replay_store(store, trust_store=trust, out=tmp_path, batch_rows=batch_rows)
    got = result.frame()
    _assert_same(expected, got)
    assert result.pins == len(expected)
    # Every rule was exercised: breaks and survivals, checks skipped, lineages, the lab.
    lineages = expected.groupby("host")["lineage"].unique().map(sorted)
    assert lineages["e.test"] == ["P-256#0", "RSA-2048#0"]  # dual stack: two lineages
    assert lineages["k.test"] == ["RSA-2048#0"]  # a key-type move: one lineage
    moved = expected[(expected["host"] == "k.test") & (expected["strategy"] == "leaf-spki")]
    on_rsa = moved[moved["pinned_at"] < T0 + timedelta(days=120)]
    assert len(on_rsa) == 4  # two observations of the RSA key, two semantics
    assert on_rsa["broken"].all()
    assert (on_rsa["broken_at"] == T0 + timedelta(days=120)).all()
    verified = expected[expected["semantics"] == "verified"]
    assert set(verified["host"]) >= {"a.test", "b.test", "c.test", "d.test", "h.test"}
    assert expected["broken"].any()
    assert not expected["broken"].all()
    assert (expected.groupby("host")["checks"].max() > 0).all()
    # A counts table has no hosts: compare with every pin weighted alike on both sides.
    every_pin = [
        PinSurvival(release_every=None, bootstrap=0)
        .fit(frame)
        .summary.drop(columns=["hosts", "weighting"])
        for frame in (expected, result.counts)
    ]
    pd.testing.assert_frame_equal(*every_pin)


def test_same_rows_from_a_partitioned_dataset(
    crafted: tuple[Path, TrustStore], tmp_path: Path
) -> None:
    path, trust = crafted
    with Store.open(path, read_only=True) as store:
        expected = replay_store(store, trust_store=trust, out=tmp_path / "from-db").frame()
        export_dataset(store, tmp_path / "dataset")
    with open_store(tmp_path / "dataset") as dataset:
        got = replay_store(dataset, trust_store=trust, out=tmp_path / "from-dataset").frame()
    _assert_same(expected, got)


def test_one_strategy_one_semantics_and_no_rows_written(
    crafted: tuple[Path, TrustStore],
) -> None:
    path, trust = crafted
    with Store.open(path, read_only=True) as store:
        expected = _reference(store, trust)
        result = replay_store(
            store, trust_store=trust, strategies=["ca-set"], semantics=[Semantics.PRESENTED]
        )
    assert result.parts == []
    chosen = expected[(expected["strategy"] == "ca-set") & (expected["semantics"] == "presented")]
    assert result.pins == len(chosen) == int(result.counts["pins"].sum())
    assert set(result.counts["strategy"]) == {"ca-set"}


def test_equal_to_the_python_replay_on_the_real_histories(
    shared_data: Path, tmp_path: Path
) -> None:
    trust = TrustStore.certifi()
    with Store.open(tmp_path / "real.duckdb") as store:
        import_pem(store, shared_data / "real-histories/manifest.csv", now=T0)
        expected = _reference(store, trust)
        got = replay_store(store, trust_store=anchor_frame(trust), out=tmp_path / "out").frame()
    assert not expected["legacy"].any()  # SHA-1-era paths are the Python replay's alone
    _assert_same(expected, got)


def test_synthetic_histories_replay_under_both_semantics(tmp_path: Path) -> None:
    with Store.open(tmp_path / "synthetic.duckdb") as store:
        generate(store.connection, hosts=300)
        result = replay_store(store, trust_store=trust_anchors())
    counts = result.counts.groupby(["strategy", "semantics"])["pins"].sum()
    assert result.observations > 0.9 * 300 * 12
    # Leaf-only chains cannot be validated: fewer verified pins, but most of them.
    assert 0.9 * counts["leaf-spki", "presented"] < counts["leaf-spki", "verified"]
    assert counts["leaf-spki", "verified"] < counts["leaf-spki", "presented"]
    model = PinSurvival().fit(result.counts)
    summary = model.summary.set_index(["strategy", "semantics"])
    # Anchors outlive leaves: a root pin survives at least as well as a leaf-key pin, at
    # every time both were followed (survival is never read past the follow-up).
    followed = summary.loc[[("root-spki", "verified"), ("leaf-spki", "verified")],
                           "followup_days"].min()  # fmt: skip
    assert followed > 90
    for days in (30.0, 90.0, followed):
        root = model.fitters_[("root-spki", "verified")].predict(days)
        leaf = model.fitters_[("leaf-spki", "verified")].predict(days)
        assert root >= leaf
    if followed < 365:
        assert summary["survival_1y"].isna().all()


def test_simulate_reads_a_dataset_out_of_core(shared_data: Path, tmp_path: Path) -> None:
    import certifi
    from typer.testing import CliRunner

    from pinlab.cli import app

    runner = CliRunner()
    with Store.open(tmp_path / "real.duckdb") as store:
        import_pem(store, shared_data / "real-histories/manifest.csv", now=T0)
        export_dataset(store, tmp_path / "dataset")
    common = ["--ca-file", certifi.where(), "--strategy", "leaf-spki", "--strategy", "ca-set"]
    python = runner.invoke(
        app, ["simulate", "--db", str(tmp_path / "real.duckdb"), "--out",
              str(tmp_path / "python.csv"), *common],
    )  # fmt: skip
    assert python.exit_code == 0, python.output
    folder = tmp_path / "replay"
    duck = runner.invoke(
        app,
        ["simulate", "--db", str(tmp_path / "dataset"), "--out", str(folder), "--engine",
         "duckdb", *common],
    )  # fmt: skip
    assert duck.exit_code == 0, duck.output
    expected = pd.read_csv(tmp_path / "python.csv")
    got = pd.concat(pd.read_parquet(p) for p in sorted(folder.glob("part-*.parquet")))
    assert len(got) == len(expected) > 0
    assert got["broken"].sum() == expected["broken"].sum()
    assert f"{len(expected)} pins replayed" in duck.output
    # Both print a summary; the Python rows are thinned to one pin per host per release,
    # the DuckDB counts table (no hosts) weighs every pin, and each says so.
    assert "one pin per host per release every 30 days" in python.output
    assert "every pin (a counts table has no hosts)" in duck.output
    for wrong, message in (
        (["--release-every", "30"], "--engine python"),
        (["--out", str(tmp_path / "x.csv")], "folder of Parquet parts"),
    ):
        arguments = ["simulate", "--db", str(tmp_path / "dataset"), "--out", str(folder),
                     "--engine", "duckdb"]  # fmt: skip
        result = runner.invoke(app, [*arguments, *common, *wrong])
        assert result.exit_code == 2
        assert message in result.output


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 7, 1_000])
def test_batches_hold_whole_timelines_and_at_most_their_rows(rows: int) -> None:
    """However the record batches fall, a batch is whole timelines, within ``rows`` unless
    a single timeline is longer, and together they are the stream, in order."""
    import duckdb

    from pinlab.survival.duckdb_engine import _batches

    con = duckdb.connect()
    lengths = [1, 4, 2, 9, 1, 1, 3, 6, 2]  # timeline i has lengths[i] observations
    con.execute(
        "CREATE TABLE t AS SELECT tl, row_number() OVER () AS n FROM "
        "(SELECT unnest(?::BIGINT[]) AS tl) ORDER BY tl",
        [[i for i, count in enumerate(lengths) for _ in range(count)]],
    )
    reader = con.sql("SELECT * FROM t ORDER BY n").to_arrow_reader(batch_size=3)
    batches = list(_batches(reader, rows))
    seen = []
    for table in batches:
        timelines = table.column("tl").to_pylist()
        assert all(timelines.count(tl) == lengths[tl] for tl in set(timelines))
        assert len(table) <= rows or len(set(timelines)) == 1
        seen += table.column("n").to_pylist()
    assert seen == list(range(1, sum(lengths) + 1))
    if rows == 1:
        assert len(batches) == len(lengths)  # one timeline a batch


def _parts(result_frame: pd.DataFrame) -> pd.DataFrame:
    return result_frame.sort_values([*KEY, "strategy", "semantics"]).reset_index(drop=True)


def test_streaming_gives_the_same_rows_whatever_the_batch(
    shared_data: Path, tmp_path: Path
) -> None:
    """On the real histories and on the synthetic generator's: one timeline a batch, the
    budget's batch and one batch for everything give exactly the same rows and counts."""
    from pinlab.memory import MemoryBudget

    trust = TrustStore.certifi()
    with Store.open(tmp_path / "real.duckdb") as store:
        import_pem(store, shared_data / "real-histories/manifest.csv", now=T0)
    with Store.open(tmp_path / "synthetic.duckdb") as store:
        generate(store.connection, hosts=150)
    cases = [(tmp_path / "real.duckdb", anchor_frame(trust)),
             (tmp_path / "synthetic.duckdb", trust_anchors())]  # fmt: skip
    budget = MemoryBudget.parse("256MB")
    for path, anchors in cases:
        results = []
        for rows in (1, budget.replay_batch_rows(), 10_000_000):
            with open_store(path, memory=budget) as store:
                out = tmp_path / f"{path.stem}-{rows}"
                results.append(replay_store(store, trust_store=anchors, out=out, batch_rows=rows))
        assert len(results[0].parts) > len(results[2].parts) == 1
        first = _parts(results[0].frame())
        assert len(first) == results[0].pins > 0
        for other in results[1:]:
            pd.testing.assert_frame_equal(first, _parts(other.frame()))
            pd.testing.assert_frame_equal(results[0].counts, other.counts)
