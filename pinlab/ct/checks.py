"""What a log entry must satisfy beyond the Merkle tree: the parts of ``extra_data``.

The Merkle tree covers the ``MerkleTreeLeaf`` only. A precert entry's precertificate and
every entry's chain travel in ``extra_data``, outside the tree, so a flipped byte there
passes every inclusion proof. Two checks close that gap:

- :meth:`EntryChecks.precert` (RFC 6962 section 3.2): the precertificate, poison removed
  (and, when a Precertificate Signing Certificate issued it, issuer and authority key
  identifier rewritten to that certificate's), must be the logged TBSCertificate byte for
  byte. A mismatch, or a precertificate that does not even decode, is a tampered entry.
- :meth:`EntryChecks.chain_error`: each certificate of the chain must sign the one before
  it (the logged certificate first). A log may accept chains loosely, so a failure is
  recorded on the entry rather than stopping the run.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from pinlab.ct.entries import LogEntry
from pinlab.ct.errors import LogMisbehaviourError
from pinlab.ct.rows import (
    POISON_OID,
    issuer_and_aki,
    name_fields,
    rewrite_issuer,
    strip_extension,
    tbs_of_certificate,
)

__all__ = ["PRECERT_SIGNING_EKU", "EntryChecks", "is_precert_signing"]

PRECERT_SIGNING_EKU = bytes.fromhex("060a2b06010401d679020404")
"""DER of OID 1.3.6.1.4.1.11129.2.4.4, the Precertificate Signing Certificate EKU."""
_CACHE_LIMIT = 4096
_ECDSA: dict[x509.ObjectIdentifier, hashes.HashAlgorithm] = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: hashes.SHA256(),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: hashes.SHA384(),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: hashes.SHA512(),
}
_RSA: dict[x509.ObjectIdentifier, hashes.HashAlgorithm] = {
    SignatureAlgorithmOID.RSA_WITH_SHA256: hashes.SHA256(),
    SignatureAlgorithmOID.RSA_WITH_SHA384: hashes.SHA384(),
    SignatureAlgorithmOID.RSA_WITH_SHA512: hashes.SHA512(),
}
_Issuer = tuple[bytes, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | None]


def is_precert_signing(der: bytes) -> bool:
    """Whether a chain certificate carries the Precertificate Signing Certificate EKU."""
    return PRECERT_SIGNING_EKU in der


class EntryChecks:
    """The checks of one run, with the parsed chain certificates cached (a log's entries
    share a handful of intermediates)."""

    def __init__(self) -> None:
        self._signing: dict[bytes, tuple[bytes, bytes | None]] = {}
        self._parsed: dict[bytes, x509.Certificate] = {}
        self._links: dict[tuple[bytes, bytes], str | None] = {}
        self._issuers: dict[bytes, _Issuer] = {}

    def precert(self, entry: LogEntry) -> None:
        """Refuse a precert entry whose precertificate is not its logged TBS (see above)."""
        try:
            tbs: bytes | None = strip_extension(tbs_of_certificate(entry.certificate), POISON_OID)
            if entry.chain and is_precert_signing(entry.chain[0]):
                signer = self._signing.get(entry.chain[0])
                if signer is None:
                    signer = self._signing[entry.chain[0]] = issuer_and_aki(entry.chain[0])
                assert tbs is not None
                tbs = rewrite_issuer(tbs, *signer)
        except (ValueError, IndexError):
            # Not even a Certificate structure: the log validated the precertificate when
            # it accepted it, so these bytes were changed since. (A precertificate that is
            # a Certificate with the logged TBS but that cryptography refuses, as some old
            # encodings are, is no tampering: it is stored as unparsable.)
            tbs = None
        if tbs != entry.tbs:
            raise LogMisbehaviourError(
                f"entry {entry.index}: the precertificate in extra_data does not match the "
                "logged TBSCertificate (tampered entry?): the log served a precertificate "
                "that is not the one in its tree. Nothing of this batch was stored; report "
                "it to the log's operator"
            )

    def _certificate(self, der: bytes) -> x509.Certificate:
        parsed = self._parsed.get(der)
        if parsed is None:
            if len(self._parsed) >= _CACHE_LIMIT:
                self._parsed.clear()
            parsed = self._parsed[der] = x509.load_der_x509_certificate(der)
        return parsed

    def _issuer(self, der: bytes) -> _Issuer:
        """(subject Name DER, public key if EC or RSA) of a chain certificate, cached:
        loading a public key costs as much as a third of a signature check."""
        known = self._issuers.get(der)
        if known is None:
            if len(self._issuers) >= _CACHE_LIMIT:
                self._issuers.clear()
            key = self._certificate(der).public_key()
            usable = key if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) else None
            known = self._issuers[der] = (name_fields(der)[1], usable)
        return known

    def _fast_link(self, child: bytes, subject: x509.Certificate, parent: bytes) -> bool:
        """Check the usual link (same issuer name bytes, ECDSA or RSA PKCS#1 v1.5 over
        SHA-2) with the parent's key loaded once; False when it is anything else, and
        ``verify_directly_issued_by`` must decide. InvalidSignature as it would raise."""
        try:
            issuer_name = name_fields(child)[0]
            parent_subject, key = self._issuer(parent)
        except (ValueError, IndexError):
            return False
        if key is None or issuer_name != parent_subject:
            return False
        algorithm = subject.signature_algorithm_oid
        if isinstance(key, ec.EllipticCurvePublicKey) and algorithm in _ECDSA:
            key.verify(
                subject.signature, subject.tbs_certificate_bytes, ec.ECDSA(_ECDSA[algorithm])
            )
            return True
        if isinstance(key, rsa.RSAPublicKey) and algorithm in _RSA:
            key.verify(
                subject.signature, subject.tbs_certificate_bytes, padding.PKCS1v15(),
                _RSA[algorithm],
            )  # fmt: skip
            return True
        return False

    def _link(self, child: bytes, parent: bytes) -> str | None:
        try:
            subject = x509.load_der_x509_certificate(child)
            if not self._fast_link(child, subject, parent):
                subject.verify_directly_issued_by(self._certificate(parent))
        except InvalidSignature:
            return "its signature does not verify with the next certificate's key"
        except (ValueError, TypeError) as error:  # issuer name, algorithm or key type
            return str(error) or type(error).__name__
        return None

    def chain_error(self, entry: LogEntry) -> str | None:
        """Why the entry's chain does not hold together, or None when each certificate
        signs the one before it (certificate 0 is the logged one)."""
        links = (entry.certificate, *entry.chain)
        for number in range(len(links) - 1):
            child, parent = links[number], links[number + 1]
            if number == 0:
                error = self._link(child, parent)
            else:  # chain links repeat from entry to entry
                key = (child, parent)
                if key not in self._links:
                    if len(self._links) >= _CACHE_LIMIT:
                        self._links.clear()
                    self._links[key] = self._link(child, parent)
                error = self._links[key]
            if error is not None:
                return (
                    f"certificate {number} of the chain (0: the logged certificate) is not "
                    f"issued by certificate {number + 1}: {error}"
                )
        return None
