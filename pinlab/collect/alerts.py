"""TLS alerts a peer sent, named as the RFCs name them, from OpenSSL's error reasons.

When a peer sends a fatal alert, OpenSSL records the reason code ``SSL_AD_REASON_OFFSET``
(1000) + the alert's number (``SSL_R_SSLV3_ALERT_*``, ``SSL_R_TLSV1_ALERT_*``). pyOpenSSL
exposes only that reason's text, and the text changed between OpenSSL releases: 1.1 says
``sslv3 alert handshake failure``, 3.x ``tls alert handshake failure``, and some were never
worded as alerts (``tlsv1 unrecognized name``). So the text is read word by word: a
protocol prefix, an optional ``alert``, then the alert's description, which is looked up
in the registry below. Reasons for errors OpenSSL found itself (``wrong version number``,
``no shared cipher``) have no such prefix-plus-description shape and are not alerts.
"""

from __future__ import annotations

__all__ = ["ALERTS", "alert_from_reason"]

ALERTS: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
    121: "ech_required",
}
"""Alert number -> name: RFC 8446 §6 (``enum AlertDescription``), with the numbers it marks
``_RESERVED`` under their TLS 1.2 names (RFC 5246 §7.2, RFC 6066 §9), and ``ech_required``
from the IANA TLS Alerts registry (Encrypted Client Hello)."""

_BY_NAME = {name: number for number, name in ALERTS.items()}
_PREFIXES = frozenset({"sslv3", "tlsv1", "tlsv12", "tlsv13", "tls"})
_SPELLINGS = {"user_cancelled": "user_canceled"}  # OpenSSL's spelling, the RFC's


def alert_from_reason(reason: str) -> tuple[int, str] | None:
    """(number, name) of the alert an OpenSSL error reason reports receiving, else None."""
    words = reason.lower().split()
    if len(words) < 2 or words[0] not in _PREFIXES:
        return None
    words = words[2:] if words[1] == "alert" else words[1:]
    name = "_".join(words)
    name = _SPELLINGS.get(name, name)
    number = _BY_NAME.get(name)
    return None if number is None else (number, name)
