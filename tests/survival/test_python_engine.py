"""Replaying histories: crafted ones with a known answer, and the real ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pinlab.certs import Certificate
from pinlab.collect import import_pem
from pinlab.pins import Semantics
from pinlab.store import Store, frames_from_chains
from pinlab.survival import (
    REPLAY_COLUMNS,
    STRATEGIES,
    PinSurvival,
    UnknownStrategyError,
    observed_chains,
    replay,
)
from pinlab.testbed.pki import CA, KeyType, pooled_key
from pinlab.verify import TrustStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _day(n: int) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture(scope="module")
def pki() -> dict[str, CA]:
    root = CA.root("survival root")
    other_root = CA.root("other trusted root")
    return {
        "root": root,
        "intermediate": root.child_ca("survival intermediate"),
        "next_intermediate": root.child_ca("survival intermediate 2"),
        "other_root": other_root,
        "rogue": other_root.child_ca("rogue intermediate"),
    }


def _store(pki: dict[str, CA]) -> TrustStore:
    return TrustStore.from_certificates(
        [pki["root"].record, pki["other_root"].record], name="test roots"
    )


def _replay(
    pki: dict[str, CA], served: list[tuple[int, list[CA | object]]], **options: object
) -> pd.DataFrame:
    frames = frames_from_chains(
        ("a.test", 443, "a.test", _day(day), [c.record for c in chain])  # type: ignore[attr-defined]
        for day, chain in served
    )
    chains = observed_chains(*frames, trust_stores=_store(pki))
    return replay(chains, **options)  # type: ignore[arg-type]


def _outcome(frame: pd.DataFrame, strategy: str, semantics: str = "verified") -> list[object]:
    rows = frame[(frame["strategy"] == strategy) & (frame["semantics"] == semantics)]
    return [None if pd.isna(b) else (b - T0).days for b in rows["broken_at"]]


def test_reuse_survives_leaf_pin_and_fresh_key_breaks_it(pki: dict[str, CA]) -> None:
    intermediate = pki["intermediate"]
    reuse = [
        (day, [intermediate.issue_leaf("a.test", key=pooled_key(KeyType.P256, 0)), intermediate])
        for day in (0, 90, 180)
    ]
    assert _outcome(_replay(pki, reuse), "leaf-spki") == [None, None, None]
    assert _outcome(_replay(pki, reuse), "cert") == [90, 180, None]
    fresh = [
        (day, [intermediate.issue_leaf("a.test", key=pooled_key(KeyType.P256, i)), intermediate])
        for i, day in enumerate((0, 90, 180))
    ]
    replayed = _replay(pki, fresh)
    assert _outcome(replayed, "leaf-spki") == [90, 180, None]
    assert _outcome(replayed, "leaf+backup") == [180, None, None]
    assert _outcome(replayed, "intermediate-spki") == [None, None, None]
    assert set(replayed.columns) >= set(REPLAY_COLUMNS)


def test_intermediate_change_breaks_intermediate_but_not_root_pins(pki: dict[str, CA]) -> None:
    first, second = pki["intermediate"], pki["next_intermediate"]
    served = [
        (0, [first.issue_leaf("a.test", key=pooled_key(KeyType.P256, 0)), first]),
        (90, [second.issue_leaf("a.test", key=pooled_key(KeyType.P256, 0)), second]),
    ]
    replayed = _replay(pki, served)
    assert _outcome(replayed, "intermediate-spki") == [90, None]
    assert _outcome(replayed, "root-spki") == [None, None]
    assert _outcome(replayed, "leaf-spki") == [None, None]
    # ca-set pins the organisation's issuer keys seen so far: the first intermediate and,
    # on verified paths, the root; the root carries the verified pin across, while the
    # presented chains (no root sent) break it.
    assert _outcome(replayed, "ca-set") == [None, None]
    assert _outcome(replayed, "ca-set", "presented") == [90, None]


def test_presented_semantics_accepts_a_rogue_chain_carrying_the_pinned_certificate(
    pki: dict[str, CA],
) -> None:
    genuine, rogue = pki["intermediate"], pki["rogue"]
    served = [
        (0, [genuine.issue_leaf("a.test"), genuine]),
        # An attacker's leaf from another trusted CA, the genuine intermediate appended.
        (30, [rogue.issue_leaf("a.test"), rogue, genuine]),
    ]
    replayed = _replay(pki, served)
    assert _outcome(replayed, "intermediate-spki", "verified") == [30, None]
    assert _outcome(replayed, "intermediate-spki", "presented") == [None, None]
    assert _outcome(replayed, "any-in-chain", "presented") == [None, None]
    assert _outcome(replayed, "any-in-chain", "verified") == [30, None]


def test_untrusted_observation_neither_breaks_nor_confirms(pki: dict[str, CA]) -> None:
    intermediate = pki["intermediate"]
    stranger = CA.root("not trusted").child_ca("stranger")
    served = [
        (0, [intermediate.issue_leaf("a.test", key=pooled_key(KeyType.P256, 0)), intermediate]),
        (30, [stranger.issue_leaf("a.test"), stranger]),
        (60, [intermediate.issue_leaf("a.test", key=pooled_key(KeyType.P256, 0)), intermediate]),
    ]
    replayed = _replay(pki, served, strategies=["leaf-spki"], semantics=[Semantics.VERIFIED])
    assert _outcome(replayed, "leaf-spki") == [None, None]  # no pin taken on the untrusted day
    assert replayed["checks"].tolist() == [1, 0]


def test_release_calendar_pins_what_was_served_before_each_release(pki: dict[str, CA]) -> None:
    intermediate = pki["intermediate"]
    served = [
        (day, [intermediate.issue_leaf("a.test", key=pooled_key(KeyType.P256, i)), intermediate])
        for i, day in enumerate((0, 50, 100))
    ]
    replayed = _replay(pki, served, strategies=["leaf-spki"], release_every=30)
    verified = replayed[replayed["semantics"] == "verified"]
    assert [(p - T0).days for p in verified["pinned_at"]] == [0, 30, 60, 90]
    assert _outcome(verified, "leaf-spki") == [50, 50, 100, 100]
    with pytest.raises(UnknownStrategyError, match="choose from"):
        _replay(pki, served, strategies=["nope"])


def test_estimator_in_lifelines_style(pki: dict[str, CA]) -> None:
    intermediate = pki["intermediate"]
    served = [
        (day, [intermediate.issue_leaf("a.test", key=pooled_key(KeyType.P256, i)), intermediate])
        for i, day in enumerate(range(0, 400, 40))
    ]
    # every pin weighted alike: the plain Kaplan-Meier of one pin per observation
    model = PinSurvival(release_every=None, bootstrap=0).fit(_replay(pki, served))
    assert isinstance(model, PinSurvival)
    summary = model.summary.set_index(["strategy", "semantics"])
    assert set(summary.index.get_level_values(0)) == set(STRATEGIES)
    assert summary.loc[("leaf-spki", "verified"), "median_days"] == pytest.approx(40)
    assert summary.loc[("intermediate-spki", "verified"), "breaks"] == 0
    curve = model.survival_function_
    assert {"days", "survival", "ci_lower", "ci_upper", "strategy", "semantics"} <= set(curve)
    import matplotlib

    matplotlib.use("Agg")
    ax = model.plot()
    assert ax.get_xlabel() == "days since the pin was taken"


def test_real_lencr_intermediate_pin_breaks_at_the_move_off_r3(
    shared_data: Path, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "real.duckdb") as store:
        import_pem(store, shared_data / "real-histories/manifest.csv", now=T0)
        frames = store.observations_df(), store.certificates_df()
    replayed = replay(observed_chains(*frames, trust_stores=TrustStore.certifi()))
    lencr = replayed[replayed["host"] == "lencr.org"]
    r3_era = datetime(2024, 5, 1, tzinfo=UTC)
    # Verified: the 2024-07-13 sample holds only the leaf (no path), so the first E-series
    # chain that validates, 2024-09-16, breaks every pin on R3 taken before.
    pins = lencr[(lencr["strategy"] == "intermediate-spki") & (lencr["semantics"] == "verified")]
    on_r3 = pins[pins["pinned_at"] < r3_era]
    assert len(on_r3) == 5
    assert {b.date().isoformat() for b in on_r3["broken_at"]} == {"2024-09-16"}
    # Presented: that leaf-only sample already breaks them, two months earlier.
    pins = lencr[(lencr["strategy"] == "intermediate-spki") & (lencr["semantics"] == "presented")]
    assert {b.date().isoformat() for b in pins[pins["pinned_at"] < r3_era]["broken_at"]} == {
        "2024-07-13"
    }
    # Fresh keys at every renewal: a leaf pin never outlives the next sample.
    leaf = lencr[(lencr["strategy"] == "leaf-spki") & (lencr["semantics"] == "presented")]
    assert leaf["broken"].sum() == len(leaf) - 1


_SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
_SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    length = bytes([size]) if size < 0x80 else bytes([0x80 | 2]) + size.to_bytes(2, "big")
    return bytes([tag]) + length + body


def _resigned_with_sha1(certificate: Certificate, issuer_key: rsa.RSAPrivateKey) -> Certificate:
    """The same certificate signed with SHA-1, as CAs did until 2016.

    cryptography no longer signs certificates with SHA-1, so the TBS is taken as built,
    its signature algorithm swapped for sha1WithRSAEncryption (an OID of the same length),
    and signed with the issuer's key directly.
    """
    tbs = certificate.x509.tbs_certificate_bytes
    assert tbs.count(_SHA256_WITH_RSA) == 1
    tbs = tbs.replace(_SHA256_WITH_RSA, _SHA1_WITH_RSA)
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _der(0x30, _SHA1_WITH_RSA + b"\x05\x00")
    return Certificate.from_der(_der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature)))


def test_sha1_era_chains_get_a_legacy_path_not_dropped() -> None:
    era = {
        "not_before": datetime(2014, 1, 1, tzinfo=UTC),
        "not_after": datetime(2019, 1, 1, tzinfo=UTC),
    }
    root = CA.root("sha1 era root", key_type=KeyType.RSA2048, **era)  # type: ignore[arg-type]
    intermediate = root.child_ca("sha1 intermediate", key_type=KeyType.RSA2048, **era)  # type: ignore[arg-type]
    leaf = intermediate.issue_leaf("old.test", key_type=KeyType.RSA2048, **era)  # type: ignore[arg-type]
    chain = [
        _resigned_with_sha1(leaf.record, intermediate.private_key),  # type: ignore[arg-type]
        _resigned_with_sha1(intermediate.record, root.private_key),  # type: ignore[arg-type]
    ]
    root_record = root.record
    frames = frames_from_chains(
        ("old.test", 443, "old.test", when, chain)
        for when in (datetime(2015, 6, 1, tzinfo=UTC), datetime(2017, 6, 1, tzinfo=UTC))
    )
    store = TrustStore.from_certificates([root_record], name="sha1 era")
    in_2015, in_2017 = observed_chains(*frames, trust_stores=store)
    assert in_2015.legacy
    assert in_2015.verified is not None
    assert [c.subject for c in in_2015.verified] == [
        leaf.record.subject,
        intermediate.record.subject,
        root_record.subject,
    ]
    # After 2016 clients refused SHA-1: no path, no pin taken or checked that day.
    assert in_2017.verified is None
    assert not in_2017.legacy
