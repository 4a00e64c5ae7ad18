"""Just enough DER to cut the SubjectPublicKeyInfo out of a certificate, byte for byte.

A pin is SHA-256 over the SPKI *exactly as the certificate encodes it* (RFC 7469, OkHttp).
Re-serialising the parsed key with cryptography's ``public_bytes`` is not equivalent: it
adds the NULL parameter some RSA keys omit, cannot encode EC keys with explicit curve
parameters, and rewrites RSA-PSS keys. Slicing the element out of the TBSCertificate keeps
the original bytes and is also several times faster, which matters because every later
stage hashes SPKIs on its hot path.

Only the outer structure is walked (Certificate -> TBSCertificate -> its first seven
fields); the parse is strict about lengths so that truncated or padded input fails cleanly.
"""

from __future__ import annotations

from typing import NamedTuple

from pinlab.errors import MalformedCertificateError

__all__ = ["Element", "read_element", "spki_algorithm_oid", "spki_from_certificate"]

_SEQUENCE = 0x30
_INTEGER = 0x02
_OID = 0x06
_VERSION_TAG = 0xA0  # [0] EXPLICIT Version


class Element(NamedTuple):
    """One DER TLV: its tag, where its content starts and where the whole element ends."""

    tag: int
    start: int  # first byte of the TLV (the tag)
    content: int  # first byte of the content
    end: int  # one past the last content byte


def read_element(der: bytes | memoryview, offset: int, limit: int) -> Element:
    """Read the TLV at ``offset``; it must end at or before ``limit``."""
    if offset + 2 > limit:
        raise MalformedCertificateError(f"DER truncated at byte {offset}: no room for a header")
    tag = der[offset]
    if tag & 0x1F == 0x1F:
        raise MalformedCertificateError(f"DER uses a high tag number at byte {offset}")
    first = der[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise MalformedCertificateError(f"DER indefinite length at byte {offset}")
        if count > 4:
            raise MalformedCertificateError(f"DER length of {count} bytes at byte {offset}")
        if pos + count > limit:
            raise MalformedCertificateError(f"DER length truncated at byte {offset}")
        length = int.from_bytes(der[pos : pos + count], "big")
        if der[pos] == 0 or length < 0x80:
            raise MalformedCertificateError(f"DER length not minimally encoded at byte {offset}")
        pos += count
    end = pos + length
    if end > limit:
        raise MalformedCertificateError(
            f"DER element at byte {offset} claims {length} bytes but only {limit - pos} remain"
        )
    return Element(tag, offset, pos, end)


def _expect(element: Element, tag: int, what: str) -> Element:
    if element.tag != tag:
        raise MalformedCertificateError(
            f"expected {what} (tag 0x{tag:02x}) at byte {element.start}, found 0x{element.tag:02x}"
        )
    return element


def spki_from_certificate(der: bytes) -> bytes:
    """Return the SubjectPublicKeyInfo TLV of a DER certificate, as encoded."""
    if type(der) is bytes:
        spki = _spki_fast(der)
        if spki is not None:
            return spki
    return _spki_strict(der)


def _spki_fast(der: bytes) -> bytes | None:
    """The hot path: the same walk as :func:`_spki_strict`, inlined, for bytes input.

    Every pin computation and every certificate record goes through here, and the strict
    walk spends most of its time in calls and tuple building. This code accepts exactly
    what the strict walk accepts, or less (outer lengths not in two bytes, field lengths
    over two bytes, any anomaly): on ``None`` the caller runs the strict walk, which
    returns the same slice or raises the precise error. It never raises itself.
    """
    # Certificate and TBSCertificate: SEQUENCEs with two-byte lengths (256 B to 64 KiB),
    # the Certificate filling the input exactly: every real certificate.
    total = len(der)
    if total < 8 or der[0] != _SEQUENCE or der[1] != 0x82 or der[2] == 0:
        return None
    if 4 + (der[2] << 8 | der[3]) != total:
        return None
    if der[4] != _SEQUENCE or der[5] != 0x82 or der[6] == 0:
        return None
    limit = 8 + (der[6] << 8 | der[7])
    if limit > total:
        return None
    # Then [0] version (optional), serialNumber, signature, issuer, validity, subject, SPKI.
    pos, index, version_allowed = 8, 0, True
    while True:
        if pos + 2 > limit:
            return None
        tag = der[pos]
        first = der[pos + 1]
        if first < 0x80:
            end = pos + 2 + first
        elif first == 0x82:
            if pos + 4 > limit or der[pos + 2] == 0:
                return None
            end = pos + 4 + (der[pos + 2] << 8 | der[pos + 3])
        elif first == 0x81:
            if pos + 3 > limit or der[pos + 2] < 0x80:
                return None
            end = pos + 3 + der[pos + 2]
        else:
            return None
        if end > limit:
            return None
        if index == 0:
            if tag == _VERSION_TAG and version_allowed:
                version_allowed = False
                pos = end
                continue
            if tag != _INTEGER:
                return None
        elif tag != _SEQUENCE:
            return None
        elif index == 5:
            return der[pos:end]
        index += 1
        pos = end


def _spki_strict(der: bytes) -> bytes:
    view = memoryview(der)
    certificate = _expect(read_element(view, 0, len(der)), _SEQUENCE, "Certificate SEQUENCE")
    if certificate.end != len(der):
        raise MalformedCertificateError(
            f"{len(der) - certificate.end} trailing bytes after the certificate"
        )
    tbs = _expect(
        read_element(view, certificate.content, certificate.end), _SEQUENCE, "TBSCertificate"
    )
    field = read_element(view, tbs.content, tbs.end)
    if field.tag == _VERSION_TAG:
        field = read_element(view, field.end, tbs.end)
    _expect(field, _INTEGER, "serialNumber")
    for name in ("signature AlgorithmIdentifier", "issuer", "validity", "subject"):
        field = _expect(read_element(view, field.end, tbs.end), _SEQUENCE, name)
    spki = _expect(read_element(view, field.end, tbs.end), _SEQUENCE, "SubjectPublicKeyInfo")
    return der[spki.start : spki.end]


def spki_algorithm_oid(spki: bytes) -> str:
    """Dotted OID of the SPKI's algorithm (works for keys cryptography cannot load)."""
    outer = _expect(read_element(spki, 0, len(spki)), _SEQUENCE, "SubjectPublicKeyInfo")
    algorithm = _expect(read_element(spki, outer.content, outer.end), _SEQUENCE, "algorithm")
    oid = _expect(read_element(spki, algorithm.content, algorithm.end), _OID, "OID")
    return _decode_oid(spki[oid.content : oid.end])


def _decode_oid(body: bytes) -> str:
    if not body:
        raise MalformedCertificateError("empty OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if body[-1] & 0x80:
        raise MalformedCertificateError("truncated OBJECT IDENTIFIER")
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(arc) for arc in head + arcs[1:])
