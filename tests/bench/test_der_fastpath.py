"""The inlined SPKI walk of :mod:`pinlab.der` agrees with the strict walk, byte for byte.

The fast path may decline (return None) but must never return anything the strict walk
would not: every mutation below either gives the strict walk's slice or, through the
public function, the strict walk's exact error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pinlab.certs import load_certificate_file
from pinlab.der import _spki_fast, _spki_strict, spki_from_certificate
from pinlab.errors import MalformedCertificateError
from pinlab.testbed.pki import CA, KeyType, pooled_key


def _outcome(der: bytes) -> tuple[str, bytes | str]:
    try:
        return "ok", _spki_strict(der)
    except MalformedCertificateError as error:
        return "error", str(error)


def _public(der: bytes) -> tuple[str, bytes | str]:
    try:
        return "ok", spki_from_certificate(der)
    except MalformedCertificateError as error:
        return "error", str(error)


def _generated() -> list[bytes]:
    root = CA.root("fastpath root", key=pooled_key(KeyType.RSA2048, 0))
    leaf = root.issue_leaf("fast.example", key=pooled_key(KeyType.P256, 0))
    return [root.der, leaf.der]


def _mutations(der: bytes) -> Iterator[bytes]:
    # The walk reads only the first few hundred bytes and the outer lengths.
    head = min(len(der), 400)
    for cut in range(len(der) - 1, max(len(der) - 40, 0), -1):
        yield der[:cut]
    for cut in range(0, head, 7):
        yield der[:cut]
    yield der + b"\x00"
    for index in range(head):
        for value in (0x00, 0x30, 0x02, 0x80, 0x81, 0x82, 0x83, 0xA0, 0xFF, der[index] ^ 0x01):
            if value != der[index]:
                yield der[:index] + bytes([value]) + der[index + 1 :]


def test_fast_path_matches_strict_on_real_certificates(shared_data: Path) -> None:
    chains = sorted((shared_data / "real-histories" / "chains").glob("*.pem"))[:20]
    assert chains
    for path in chains:
        for certificate in load_certificate_file(path):
            assert _spki_fast(certificate.der) == _spki_strict(certificate.der)


@pytest.mark.parametrize("which", [0, 1])
def test_fast_path_never_disagrees_on_mutations(which: int) -> None:
    der = _generated()[which]
    for mutated in _mutations(der):
        expected = _outcome(mutated)
        fast = _spki_fast(mutated)
        if fast is not None:
            assert expected == ("ok", fast)
        assert _public(mutated) == expected


def test_non_bytes_input_keeps_the_strict_behaviour() -> None:
    der = _generated()[1]
    assert spki_from_certificate(bytearray(der)) == _spki_strict(der)  # type: ignore[arg-type]
    view = memoryview(der)
    assert bytes(spki_from_certificate(view)) == _spki_strict(der)  # type: ignore[arg-type]
