"""Path validation on real chains, at the time they were served."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pinlab.certs import load_certificate_file
from pinlab.verify import TrustStore, VerificationFailure, verify_chain

ONE_PASSWORD = "real-histories/chains/52a7ebe911392c59.pem"
SERVED_AT = datetime(2022, 9, 25, tzinfo=UTC)


@pytest.fixture(scope="module")
def certifi_store() -> TrustStore:
    return TrustStore.certifi()


def test_builds_the_path_to_a_trust_store_root(
    shared_data: Path, certifi_store: TrustStore
) -> None:
    chain = load_certificate_file(shared_data / ONE_PASSWORD)
    verification = verify_chain(
        chain, hostname="1password.com", at=SERVED_AT, trust_store=certifi_store
    )
    assert verification.ok
    assert [c.subject.split(",")[0] for c in verification.path] == [
        "CN=*.1password.com",
        "CN=Amazon",
        "CN=Amazon Root CA 1",
    ]
    assert certifi_store.contains(verification.path[-1])
    # The server sent Amazon Root CA 1 cross-signed by Starfield; the path ends at the
    # self-signed anchor of the store instead, which the server never sent.
    assert verification.added_from_store(chain) == {2}


def test_wrong_name_is_a_hostname_failure(shared_data: Path, certifi_store: TrustStore) -> None:
    chain = load_certificate_file(shared_data / ONE_PASSWORD)
    verification = verify_chain(
        chain, hostname="example.org", at=SERVED_AT, trust_store=certifi_store
    )
    assert verification.failure is VerificationFailure.HOSTNAME
    assert verification.path == ()
    assert "example.org" in (verification.error or "")


def test_one_second_after_expiry_is_untrusted(shared_data: Path, certifi_store: TrustStore) -> None:
    chain = load_certificate_file(shared_data / ONE_PASSWORD)
    expiry = chain[0].not_after
    before = verify_chain(chain, hostname="1password.com", at=expiry, trust_store=certifi_store)
    after = verify_chain(
        chain, hostname="1password.com", at=expiry + timedelta(seconds=1), trust_store=certifi_store
    )
    assert before.ok
    assert after.failure is VerificationFailure.UNTRUSTED


def test_unknown_anchor_is_untrusted(shared_data: Path) -> None:
    chain = load_certificate_file(shared_data / ONE_PASSWORD)
    lencr = load_certificate_file(shared_data / "le-hierarchy/certs/0f39373b3dab9354.pem")
    store = TrustStore.from_certificates(lencr, name="staging only")
    verification = verify_chain(chain, hostname="1password.com", at=SERVED_AT, trust_store=store)
    assert verification.failure is VerificationFailure.UNTRUSTED


def test_naive_time_is_refused(shared_data: Path, certifi_store: TrustStore) -> None:
    chain = load_certificate_file(shared_data / ONE_PASSWORD)
    naive = datetime(2022, 9, 25)  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_chain(chain, hostname="1password.com", at=naive, trust_store=certifi_store)


def test_empty_chain(certifi_store: TrustStore) -> None:
    verification = verify_chain([], hostname="x.test", at=SERVED_AT, trust_store=certifi_store)
    assert verification.failure is VerificationFailure.NO_CERTIFICATE
