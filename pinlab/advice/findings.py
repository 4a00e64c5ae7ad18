"""Pins that cannot be right: bogus values and keys of CAs that left service.

:func:`bogus_reason` recognises the SHA-256 of empty input (shipped in a real SDK), base64
of ASCII hex text (a hex digest encoded again), and placeholders (``AAAA…=``, ``XXXX…=``:
a real digest has about 30 distinct bytes, these have a few). :data:`RETIRED_CA_KEYS` is a
small catalog of CA keys no longer issuing, each with the day its last certificate expired
and its source; the Let's Encrypt entries are checked in the tests against the
certificates of the Let's Encrypt hierarchy.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from datetime import UTC, datetime

from pinlab.pins import Pin

__all__ = ["EMPTY_INPUT_SHA256", "RETIRED_CA_KEYS", "RetiredKey", "bogus_reason"]

EMPTY_INPUT_SHA256 = hashlib.sha256(b"").digest()
_HEX_BYTES = frozenset(string.hexdigits.encode("ascii"))


def bogus_reason(pin: Pin) -> str | None:
    """Why ``pin`` cannot be the pin of any key, or None."""
    if pin.digest == EMPTY_INPUT_SHA256:
        return "is the SHA-256 of empty input, not of a public key"
    if all(byte in _HEX_BYTES for byte in pin.digest):
        return "decodes to ASCII hex text: a hex digest was base64-encoded again"
    if len(set(pin.digest)) <= 4:
        return "is a placeholder (a digest of a few repeated bytes)"
    return None


@dataclass(frozen=True, slots=True)
class RetiredKey:
    """A CA key no longer issuing: its name, the day it left service, and the source."""

    name: str
    pin: Pin
    left_service: datetime
    source: str


def _retired(name: str, pin: str, day: str, source: str) -> RetiredKey:
    left = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return RetiredKey(name, Pin.parse("sha256/" + pin), left, source)


_LE = "letsencrypt/website static/certs (../shared/data/le-hierarchy), last not_after"
RETIRED_CA_KEYS: tuple[RetiredKey, ...] = (
    _retired("Let's Encrypt R3", "jQJTbIh0grw0/1TkHSumWb+Fs0Ggogr621gT3PvPKG0=", "2025-09-15", _LE),
    _retired("Let's Encrypt R4", "5VReIRNHJBiRxVSgOTTN6bdJZkpZ0m1hX+WPd5kPLQM=", "2025-09-15", _LE),
    _retired("Let's Encrypt E1", "J2/oqMTsdhFWW/n85tys6b4yDBtb6idZayIEBx7QTxA=", "2025-09-15", _LE),
    _retired("Let's Encrypt E2", "vZNucrIS7293MQLGt304+UKXMi78JTlrwyeUIuDIknA=", "2025-09-15", _LE),
    _retired(
        "Let's Encrypt Authority X1/X3",
        "YLh1dUR9y6Kja30RrAn7JKnbQG/uEtLMkBgFF2Fuihg=",
        "2021-10-06",
        _LE,
    ),
    _retired(
        "Let's Encrypt Authority X2/X4",
        "sRHdihwgkaib1P1gxX8HFszlD+7/gTfNvuAybgLPNis=",
        "2021-10-06",
        _LE,
    ),
    _retired("DST Root CA X3", "Vjs8r4z+80wjNcr1YKepWQboSIRi63WsWXhIMN+eWys=", "2021-09-30", _LE),
    _retired(
        "AddTrust External CA Root",
        "lCppFqbkrlJ3EcVFAkeip0+44VaoJUymbnOaEUk7tEU=",
        "2020-05-30",
        "Mozilla StaticHPKPins.h (kAddTrust_External_RootFingerprint); "
        "the root certificate expired 2020-05-30 10:48:38 UTC",
    ),
)
"""CA keys that left service. ISRG Root X1 signed by DST is not here: it is ISRG Root X1's
key, which still issues."""
