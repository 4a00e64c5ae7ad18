"""TLS alerts are recorded as ``tls_alert`` with the alert's RFC name, from real alerts that
``openssl s_server`` sends on 127.0.0.1, through both handshake engines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
from OpenSSL import SSL, _util

from pinlab.collect.aiotls import handshake_async
from pinlab.collect.alerts import ALERTS, alert_from_reason
from pinlab.collect.tls import HandshakeError, handshake
from pinlab.store import Status
from pinlab.testbed.loopback import openssl_server
from pinlab.testbed.pki import CA, KeyType, Leaf
from tests.collect.hostile import HostileServer, garbage

SSL_LIB = 20  # ERR_LIB_SSL
SSL_AD_REASON_OFFSET = 1000


def test_every_alert_reason_openssl_knows_is_named_as_the_rfc_names_it() -> None:
    """OpenSSL's reason text for each received alert (its code is 1000 + the alert number)
    maps back to that number: the table is checked against the library, not against us."""
    SSL.Context(SSL.TLS_CLIENT_METHOD)  # loads libssl's error strings
    checked = 0
    for number in range(256):
        text = _util.lib.ERR_reason_error_string((SSL_LIB << 23) | (SSL_AD_REASON_OFFSET + number))
        if text == _util.ffi.NULL:
            continue
        reason = _util.ffi.string(text).decode()
        assert alert_from_reason(reason) == (number, ALERTS[number]), reason
        checked += 1
    assert checked >= 25  # OpenSSL 3 words about thirty alerts
    for local in ("wrong version number", "no shared cipher", "tls invalid ecpointformat list"):
        assert alert_from_reason(local) is None


@pytest.fixture(scope="module")
def leaf() -> Leaf:
    return CA.root("Alert Root").issue_leaf("alert.test", key_type=KeyType.P256)


SERVERS = {
    # The SNI names another host and the mismatch is fatal: RFC 6066 §3's alert.
    "unrecognized_name": ["-servername", "other.test", "-servername_fatal"],
    # A TLS 1.2 server that requires a client certificate we do not send. (In TLS 1.3 its
    # certificate_required alert comes after the client's Finished: the chain was read.)
    "handshake_failure": ["-Verify", "1", "-tls1_2"],
    # No key share group in common with the client.
    "groups": ["-groups", "ffdhe8192", "-tls1_3"],
}


@pytest.fixture(scope="module")
def servers(leaf: Leaf, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    folder = tmp_path_factory.mktemp("alerts")
    cert, key = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    second = ["-cert2", str(cert), "-key2", str(key)]  # -servername needs a second context
    with contextlib.ExitStack() as stack:
        ports = {
            case: stack.enter_context(
                openssl_server(leaf.cert_pem, leaf.key_pem, extra_args=[*args, *second])
            )
            for case, args in SERVERS.items()
        }
        yield ports


EXPECTED = {
    "unrecognized_name": "unrecognized_name",
    "handshake_failure": "handshake_failure",
    "groups": "handshake_failure",
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_real_alerts_through_both_engines(servers: dict[str, int], case: str) -> None:
    port = servers[case]
    with pytest.raises(HandshakeError) as blocking:
        handshake("127.0.0.1", port, sni="alert.test", timeout=5)
    with pytest.raises(HandshakeError) as loop:
        asyncio.run(handshake_async("127.0.0.1", port, sni="alert.test", timeout=5))
    for failure in (blocking.value, loop.value):
        assert (failure.status, failure.message) == (Status.TLS_ALERT, EXPECTED[case])


def test_a_server_without_an_alert_is_still_a_protocol_error() -> None:
    """Bytes that are not TLS: OpenSSL's own finding, not an alert from the peer."""
    with HostileServer(garbage) as port, pytest.raises(HandshakeError) as failure:
        handshake("127.0.0.1", port, sni="alert.test", timeout=5)
    assert failure.value.status == Status.PROTOCOL_ERROR
