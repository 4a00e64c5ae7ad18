"""Certificate rows at log speed, and the key that makes a precertificate and its final
certificate one issuance.

A CT backfill turns hundreds of thousands of certificates a minute into store rows, where
the general :meth:`pinlab.certs.Certificate.from_der` spends most of its time on things
that repeat from one log entry to the next (the issuer's name, the curve of an EC key).
:func:`certificate_row` caches those and builds exactly the row that
``CertificateRow.from_certificate(Certificate.from_der(der))`` builds (a test holds the two
equal); anything unusual takes that general path.

RFC 6962 section 3.1: a precertificate's logged TBSCertificate is the final certificate's
without the SCT list extension, and the precertificate's own TBS without its poison
extension. :func:`issuance_key` hashes that common TBS, so it matches issuer, serial and
every other field of the TBS at once.
"""

from __future__ import annotations

import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pinlab.certs import Certificate
from pinlab.store import CertificateRow

__all__ = [
    "AKI_OID",
    "POISON_OID",
    "SCT_LIST_OID",
    "certificate_row",
    "dns_names",
    "identities",
    "issuance_key",
    "issuer_and_aki",
    "name_fields",
    "rewrite_issuer",
    "strip_extension",
    "tbs_of",
    "tbs_of_certificate",
    "tlv",
]

POISON_OID = bytes.fromhex("060a2b06010401d679020403")
"""DER of OID 1.3.6.1.4.1.11129.2.4.3, the precertificate poison extension."""
SCT_LIST_OID = bytes.fromhex("060a2b06010401d679020402")
"""DER of OID 1.3.6.1.4.1.11129.2.4.2, the embedded SCT list extension."""

AKI_OID = bytes.fromhex("0603551d23")
"""DER of OID 2.5.29.35, the authority key identifier extension."""

_EC_OID = bytes.fromhex("06072a8648ce3d0201")
_RSA_OID = bytes.fromhex("06092a864886f70d010101")
_CACHE_LIMIT = 4096
_names: dict[bytes, str] = {}
_curves: dict[bytes, tuple[int, str]] = {}


def _header(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the TLV at ``pos``; lengths up to three bytes."""
    tag, first = der[pos], der[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    if not 1 <= count <= 3:
        raise ValueError("unsupported DER length")
    length = int.from_bytes(der[pos + 2 : pos + 2 + count], "big")
    return tag, pos + 2 + count, pos + 2 + count + length


def _tbs_fields(der: bytes) -> list[tuple[int, int, int, int]]:
    """The TBSCertificate's elements as (tag, start, content, end), from the certificate."""
    _, content, end = _header(der, 0)
    _, tbs_content, tbs_end = _header(der, content)
    fields, pos = [], tbs_content
    while pos < tbs_end:
        tag, body, stop = _header(der, pos)
        fields.append((tag, pos, body, stop))
        pos = stop
    if pos != tbs_end or end != len(der):
        raise ValueError("DER lengths do not add up")
    return fields


def _issuer_name(raw: bytes, parsed: x509.Certificate) -> str:
    """RFC 4514 issuer name, cached by its DER: a log's entries share a few issuers."""
    text = _names.get(raw)
    if text is None:
        if len(_names) >= _CACHE_LIMIT:
            _names.clear()
        text = _names[raw] = parsed.issuer.rfc4514_string()
    return text


def certificate_row(der: bytes) -> CertificateRow:
    """The store row of a DER certificate; :class:`MalformedCertificateError` if refused."""
    try:
        return _fast_row(der)
    except Exception:  # anything unusual: the general path decides, with its own errors
        return CertificateRow.from_certificate(Certificate.from_der(der))


def _fast_row(der: bytes) -> CertificateRow:
    parsed = x509.load_der_x509_certificate(der)
    fields = _tbs_fields(der)
    offset = 1 if fields[0][0] == 0xA0 else 0
    _, issuer_start, _, issuer_end = fields[offset + 2]
    _, spki_start, spki_content, spki_end = fields[offset + 5]
    spki = der[spki_start:spki_end]
    _, alg_content, alg_end = _header(der, spki_content)
    algorithm = der[alg_content:alg_end]
    curve: str | None
    if algorithm.startswith(_EC_OID):
        known = _curves.get(algorithm)
        if known is None:
            key = parsed.public_key()
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ValueError("EC algorithm without an EC key")
            known = _curves[algorithm] = (key.curve.key_size, key.curve.name)
        key_type, (key_size, curve) = "EC", known
    elif algorithm.startswith(_RSA_OID):
        key_type, key_size, curve = "RSA", parsed.public_key().key_size, None  # type: ignore[union-attr]
    else:
        raise ValueError("uncommon key type: general path")
    is_ca, path_length = False, None
    sans: tuple[str, ...] = ()
    for extension in parsed.extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints):
            is_ca, path_length = value.ca, value.path_length
        elif isinstance(value, x509.SubjectAlternativeName):
            ips = [str(address) for address in value.get_values_for_type(x509.IPAddress)]
            sans = (*value.get_values_for_type(x509.DNSName), *ips)
    return CertificateRow(
        sha256=hashlib.sha256(der).hexdigest(),
        der=der,
        subject=parsed.subject.rfc4514_string(),
        issuer=_issuer_name(der[issuer_start:issuer_end], parsed),
        serial=format(parsed.serial_number, "x"),
        not_before=parsed.not_valid_before_utc,
        not_after=parsed.not_valid_after_utc,
        spki_sha256=hashlib.sha256(spki).hexdigest(),
        key_type=key_type,
        key_size=key_size,
        curve=curve,
        is_ca=is_ca,
        path_length=path_length,
        sans=sans,
    )


_SAN_OID = bytes.fromhex("0603551d11")


def dns_names(der: bytes) -> list[str] | None:
    """The SAN DNS names and IP addresses of a DER certificate, read straight from the
    bytes (a few microseconds); None when there is no SAN or it is not plainly encoded,
    and the caller must parse the certificate."""
    at = der.find(_SAN_OID)
    if at < 0 or der.find(_SAN_OID, at + 5) >= 0:
        return None
    try:
        pos = at + 5
        if der[pos] == 0x01:  # critical BOOLEAN
            pos += 3
        tag, content, end = _header(der, pos)
        if tag != 0x04:
            return None
        tag, pos, stop = _header(der, content)
        if tag != 0x30 or stop != end or end > len(der):
            return None
        names = []
        while pos < stop:
            tag, body, next_pos = _header(der, pos)
            if tag == 0x82:
                names.append(der[body:next_pos].decode("ascii"))
            elif tag == 0x87 and next_pos - body in (4, 16):
                names.append(str(ipaddress.ip_address(der[body:next_pos])))
            pos = next_pos
        return names if pos == stop else None
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


def identities(row: CertificateRow, der: bytes) -> tuple[str, ...]:
    """The DNS names a certificate is for: its SANs, else its subject common names."""
    if row.sans:
        return row.sans
    try:
        names = x509.load_der_x509_certificate(der).subject
        return tuple(str(a.value) for a in names.get_attributes_for_oid(NameOID.COMMON_NAME))
    except ValueError:
        return ()


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def strip_extension(tbs: bytes, oid: bytes) -> bytes:
    """``tbs`` (a DER TBSCertificate) without the extension whose OID DER is ``oid``.

    Returns ``tbs`` unchanged when the extension is absent. The extensions field is dropped
    when nothing else is left in it.
    """
    if oid not in tbs:
        return tbs
    _, content, end = _header(tbs, 0)
    pos, head = content, bytearray()
    while pos < end:
        tag, body, stop = _header(tbs, pos)
        if tag != 0xA3:
            head += tbs[pos:stop]
            pos = stop
            continue
        _, ext_content, ext_end = _header(tbs, body)
        kept, cursor = bytearray(), ext_content
        while cursor < ext_end:
            _, item_body, item_end = _header(tbs, cursor)
            _, _, oid_end = _header(tbs, item_body)
            if tbs[item_body:oid_end] != oid:
                kept += tbs[cursor:item_end]
            cursor = item_end
        if kept:
            sequence = b"\x30" + _length(len(kept)) + kept
            head += b"\xa3" + _length(len(sequence)) + sequence
        pos = stop
    return b"\x30" + _length(len(head)) + bytes(head)


def issuance_key(*, tbs: bytes, precert_entry: bool) -> str:
    """Hex SHA-256 of the TBS common to a precertificate and its final certificate.

    ``tbs`` is the logged TBS of a precert entry (already without poison), or the TBS of a
    final certificate (its SCT list is removed here).
    """
    common = tbs if precert_entry else strip_extension(tbs, SCT_LIST_OID)
    return hashlib.sha256(common).hexdigest()


def tbs_of_certificate(der: bytes) -> bytes:
    """The TBSCertificate TLV of ``der``, checking that ``der`` is exactly a ``Certificate``
    SEQUENCE of TBSCertificate, signatureAlgorithm and signatureValue (RFC 5280 section
    4.1) with nothing after it; ValueError otherwise."""
    tag, content, end = _header(der, 0)
    if tag != 0x30 or end != len(der):
        raise ValueError("not a DER SEQUENCE spanning the whole certificate")
    tags, pos, tbs_end = [], content, content
    while pos < end:
        tag, _, stop = _header(der, pos)
        tags.append(tag)
        pos, tbs_end = stop, tbs_end if len(tags) > 1 else stop
    if tags != [0x30, 0x30, 0x03] or pos != end:
        raise ValueError("not TBSCertificate, signatureAlgorithm, signatureValue")
    return der[content:tbs_end]


def tbs_of(der: bytes) -> bytes:
    """The TBSCertificate TLV of a DER certificate."""
    _, content, _ = _header(der, 0)
    _, _, end = _header(der, content)
    return der[content:end]


def _extensions(data: bytes, at: int) -> list[tuple[int, int, bytes, bytes, bytes]]:
    """The Extension items of the SEQUENCE at ``at`` (the body of an extensions [3]
    field): (start, end, OID DER, OID and critical flag DER, extnValue contents)."""
    _, content, stop = _header(data, at)
    items, cursor = [], content
    while cursor < stop:
        _, body, item_end = _header(data, cursor)
        _, _, oid_end = _header(data, body)
        tag, value, value_end = _header(data, oid_end)
        value_at = oid_end
        if tag == 0x01:  # critical BOOLEAN
            value_at = value_end
            tag, value, value_end = _header(data, value_end)
        if tag != 0x04 or value_end != item_end:
            raise ValueError("Extension is not OID, [critical], OCTET STRING")
        items.append(
            (cursor, item_end, data[body:oid_end], data[body:value_at], data[value:value_end])
        )
        cursor = item_end
    if cursor != stop:
        raise ValueError("DER lengths do not add up")
    return items


def tlv(tag: int, body: bytes) -> bytes:
    """The DER TLV of ``tag`` around ``body``."""
    return bytes([tag]) + _length(len(body)) + body


def name_fields(der: bytes) -> tuple[bytes, bytes]:
    """(issuer, subject) Name TLVs of a DER certificate; ValueError or IndexError if the
    DER does not add up."""
    fields = _tbs_fields(der)
    offset = 1 if fields[0][0] == 0xA0 else 0
    _, issuer_start, _, issuer_end = fields[offset + 2]
    _, subject_start, _, subject_end = fields[offset + 4]
    return der[issuer_start:issuer_end], der[subject_start:subject_end]


def issuer_and_aki(der: bytes) -> tuple[bytes, bytes | None]:
    """A DER certificate's issuer Name (TLV) and authority key identifier (the extnValue
    contents), as RFC 6962 section 3.2 takes them from a Precertificate Signing
    Certificate; ValueError if the DER does not add up."""
    fields = _tbs_fields(der)
    offset = 1 if fields[0][0] == 0xA0 else 0
    _, issuer_start, _, issuer_end = fields[offset + 2]
    aki = None
    for tag, _, body, _ in fields:
        if tag == 0xA3:
            for _, _, oid, _, value in _extensions(der, body):
                if oid == AKI_OID:
                    aki = value
    return der[issuer_start:issuer_end], aki


def rewrite_issuer(tbs: bytes, issuer: bytes, aki: bytes | None) -> bytes:
    """RFC 6962 section 3.2 for a precertificate issued by a Precertificate Signing
    Certificate: its TBS (poison already removed) with the issuer Name replaced by
    ``issuer`` (the signing certificate's issuer) and the authority key identifier by
    ``aki`` (the signing certificate's): replaced in place keeping its criticality,
    removed when ``aki`` is None, appended when the precertificate had none.
    ValueError if the DER does not add up."""
    _, content, end = _header(tbs, 0)
    fields: list[tuple[int, int, int, int]] = []
    pos = content
    while pos < end:
        tag, body, stop = _header(tbs, pos)
        fields.append((tag, pos, body, stop))
        pos = stop
    if pos != end or end != len(tbs):
        raise ValueError("DER lengths do not add up")
    issuer_at = 3 if fields and fields[0][0] == 0xA0 else 2
    if len(fields) <= issuer_at + 3:
        raise ValueError("TBSCertificate too short")
    head, has_extensions = bytearray(), False
    new_aki = tlv(0x30, AKI_OID + tlv(0x04, aki)) if aki is not None else b""
    for number, (tag, start, body, stop) in enumerate(fields):
        if number == issuer_at:
            head += issuer
        elif tag == 0xA3:
            has_extensions, kept, replaced = True, bytearray(), False
            for item_start, item_end, oid, prefix, _ in _extensions(tbs, body):
                if oid != AKI_OID:
                    kept += tbs[item_start:item_end]
                elif aki is not None:
                    kept += tlv(0x30, prefix + tlv(0x04, aki))
                replaced = replaced or oid == AKI_OID
            if not replaced:
                kept += new_aki
            if kept:
                head += tlv(0xA3, tlv(0x30, bytes(kept)))
        else:
            head += tbs[start:stop]
    if not has_extensions and new_aki:
        head += tlv(0xA3, tlv(0x30, new_aki))
    return tlv(0x30, bytes(head))
