"""A Certificate Transparency log on loopback, correct by RFC 6962, for tests and benchmarks.

::

    log = LocalLog()
    issued = log.issue(intermediate, "a.test", timestamp=ms)    # precert logged, SCT embedded
    log.add_certificate(issued.final, issued.chain, timestamp=ms + 1000)
    log.write_tiles(directory, origin="127.0.0.1/static")      # the static-ct-api view

:mod:`pinlab.testbed.ctserver` serves it over HTTP (RFC 6962) and the tiles with nginx.

Precertificates carry the poison extension and are signed by the issuing CA; their final
certificates embed a real SCT signed by this log over the precert entry. Tree heads are
signed with ECDSA P-256.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from pinlab.ct.checks import is_precert_signing
from pinlab.ct.entries import EntryType, LogEntry, encode_extra_data, encode_leaf, encode_tile_leaf
from pinlab.ct.merkle import MerkleTree
from pinlab.ct.rows import POISON_OID, issuer_and_aki, rewrite_issuer, strip_extension, tbs_of
from pinlab.ct.static import tile_path
from pinlab.ct.sth import LogKey, SignedTreeHead, checkpoint_text, digitally_sign
from pinlab.testbed.pki import CA, DEFAULT_NOT_AFTER, DEFAULT_NOT_BEFORE, PrivateKey, PublicKey

__all__ = ["Issued", "LocalLog"]

_SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
_PRECERT_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4")


@dataclass(frozen=True, slots=True)
class Issued:
    """A precertificate and its final certificate (DER), and the chain above them."""

    precert: bytes
    final: bytes
    chain: tuple[bytes, ...]
    precert_index: int
    timestamp: int


@dataclass(slots=True)
class _Stored:
    entry: LogEntry
    extra_data: bytes


class LocalLog:
    """Entries, their Merkle tree and a signing key, all in memory."""

    def __init__(self, *, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.private_key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        self.key = LogKey.from_der(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.tree = MerkleTree()
        self.stored: list[_Stored] = []

    @property
    def size(self) -> int:
        """Number of entries."""
        return self.tree.size

    @property
    def public_key_pem(self) -> bytes:
        """The log's public key as PEM (what ``--public-key`` reads)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def _append(self, entry: LogEntry, extra_data: bytes) -> int:
        self.stored.append(_Stored(entry, extra_data))
        self.tree.append(entry.leaf_hash)
        return entry.index

    def add_certificate(self, der: bytes, chain: Sequence[bytes], *, timestamp: int) -> int:
        """Log a certificate as an ``x509_entry``; return its index."""
        leaf = encode_leaf(timestamp, der)
        entry = LogEntry(self.size, timestamp, EntryType.X509, der, tuple(chain), leaf)
        return self._append(entry, encode_extra_data(chain))

    def add_precertificate(self, der: bytes, chain: Sequence[bytes], *, timestamp: int) -> int:
        """Log a precertificate (poisoned, signed by ``chain[0]``) as a ``precert_entry``.

        When ``chain[0]`` is a Precertificate Signing Certificate the logged TBS takes its
        issuer and authority key identifier, and the issuer key is ``chain[1]``'s (RFC 6962
        section 3.2)."""
        tbs = strip_extension(tbs_of(der), POISON_OID)
        signing = is_precert_signing(chain[0])
        if signing:
            tbs = rewrite_issuer(tbs, *issuer_and_aki(chain[0]))
        issuer_key_hash = _spki_sha256(chain[1] if signing else chain[0])
        leaf = encode_leaf(timestamp, der, tbs=tbs, issuer_key_hash=issuer_key_hash)
        entry = LogEntry(
            self.size, timestamp, EntryType.PRECERT, der, tuple(chain), leaf, tbs, issuer_key_hash
        )
        return self._append(entry, encode_extra_data(chain, precertificate=der))

    def sct(self, index: int) -> bytes:
        """The SignedCertificateTimestamp of entry ``index`` (TLS encoding)."""
        entry = self.stored[index].entry
        body = entry.leaf_input[2:]  # the TimestampedEntry: timestamp, type, entry, extensions
        signed = b"\x00\x00" + body
        signature = digitally_sign(self.private_key, signed)
        return b"\x00" + self.key.log_id + body[:8] + b"\x00\x00" + signature

    def issue(
        self,
        ca: CA,
        *hostnames: str,
        timestamp: int,
        key: PrivateKey | None = None,
        not_before: Any = DEFAULT_NOT_BEFORE,
        not_after: Any = DEFAULT_NOT_AFTER,
        serial: int | None = None,
        signer: CA | None = None,
    ) -> Issued:
        """Issue for ``hostnames`` the RFC 6962 way: build and log a precertificate, then
        build the final certificate with the log's SCT embedded (the final one is not
        logged: call :meth:`add_certificate` to log it too). With ``signer`` (from
        :meth:`precert_signer`) that certificate signs the precertificate."""
        private = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        chain = tuple(c.der for c in ca.chain)
        serial = serial if serial is not None else x509.random_serial_number()
        builder = _builder(ca, hostnames, private.public_key(), serial, not_before, not_after)
        signing = signer if signer is not None else ca
        precert = _builder(
            signing, hostnames, private.public_key(), serial, not_before, not_after
        ).add_extension(x509.PrecertPoison(), critical=True)
        precert_der = _sign(precert, signing)
        precert_chain = chain if signer is None else (signer.der, *chain)
        index = self.add_precertificate(precert_der, precert_chain, timestamp=timestamp)
        sct = self.sct(index)
        sct_list = len(sct).to_bytes(2, "big") + sct
        sct_list = len(sct_list).to_bytes(2, "big") + sct_list
        value = b"\x04" + _der_length(len(sct_list)) + sct_list
        final = builder.add_extension(x509.UnrecognizedExtension(_SCT_OID, value), critical=False)
        return Issued(precert_der, _sign(final, ca), chain, index, timestamp)

    @staticmethod
    def precert_signer(ca: CA) -> CA:
        """A Precertificate Signing Certificate of ``ca`` (RFC 6962 section 3.1): a CA
        certificate with the Certificate Transparency EKU, allowed to sign ``ca``'s
        precertificates and nothing else."""
        private = ec.generate_private_key(ec.SECP256R1())
        name = f"{ca.certificate.subject.rfc4514_string()} Precertificate Signing"
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name[:64])]))
            .issuer_name(ca.certificate.subject)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(DEFAULT_NOT_BEFORE)
            .not_valid_after(DEFAULT_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.ExtendedKeyUsage([_PRECERT_SIGNING_EKU]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.certificate.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        certificate = x509.load_der_x509_certificate(_sign(builder, ca))
        return CA(certificate, private, ca)

    def sth(self, size: int | None = None, *, timestamp: int | None = None) -> SignedTreeHead:
        """A signed tree head for the first ``size`` entries (all by default)."""
        size = self.size if size is None else size
        if timestamp is None:
            timestamp = max((s.entry.timestamp for s in self.stored[:size]), default=0) + 1000
        return SignedTreeHead.sign(
            self.private_key, tree_size=size, timestamp=timestamp, root_hash=self.tree.root(size)
        )

    def log_list(self, url: str, *, description: str = "pinlab test log") -> dict[str, Any]:
        """A v3 JSON log list naming this log at ``url`` (what certspotter's ``-logs`` reads)."""
        log = {
            "description": description,
            "log_id": base64.b64encode(self.key.log_id).decode(),
            "key": base64.b64encode(self.key.spki).decode(),
            "url": url,
            "mmd": 86400,
            "state": {"usable": {"timestamp": "2020-01-01T00:00:00Z"}},
        }
        return {
            "version": "3.0",
            "log_list_timestamp": "2020-01-01T00:00:00Z",
            "operators": [{"name": "pinlab", "email": ["ct@pinlab.test"], "logs": [log]}],
        }

    # -- the static-ct-api view ----------------------------------------------------------------

    def write_tiles(self, directory: str | Path, *, origin: str, size: int | None = None) -> Path:
        """Write the first ``size`` entries as a static-ct-api log under ``directory``:
        ``checkpoint``, ``tile/<L>/<N>`` hash tiles, ``tile/data/<N>`` data tiles and
        ``issuer/<fingerprint>``, partial tiles as ``.p/<W>``."""
        root = Path(directory)
        size = self.size if size is None else size
        sth = self.sth(size)
        (root / "issuer").mkdir(parents=True, exist_ok=True)
        for start in range(0, size, 256):
            count = min(256, size - start)
            data = b""
            for stored in self.stored[start : start + count]:
                entry = stored.entry
                data += encode_tile_leaf(
                    entry.timestamp,
                    entry.certificate,
                    entry.chain,
                    tbs=entry.tbs,
                    issuer_key_hash=entry.issuer_key_hash,
                )
                for issuer in entry.chain:
                    (root / "issuer" / hashlib.sha256(issuer).hexdigest()).write_bytes(issuer)
            _write(root / tile_path("data", start // 256, count), data)
        level, width = 0, 1
        while size // width:
            hashes_count = size // width
            for tile in range(0, hashes_count, 256):
                count = min(256, hashes_count - tile)
                body = b"".join(
                    self.tree.subtree(i * width, (i + 1) * width) for i in range(tile, tile + count)
                )
                _write(root / tile_path(str(level), tile // 256, count), body)
            level, width = level + 1, width * 256
        (root / "checkpoint").write_text(checkpoint_text(origin, sth, self.key.log_id))
        return root


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _spki_sha256(der: bytes) -> bytes:
    certificate = x509.load_der_x509_certificate(der)
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _builder(
    ca: CA,
    hostnames: Sequence[str],
    public_key: PublicKey,
    serial: int,
    not_before: Any,
    not_after: Any,
) -> x509.CertificateBuilder:
    names = [x509.DNSName(name) for name in hostnames]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.certificate.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )


def _sign(builder: x509.CertificateBuilder, ca: CA) -> bytes:
    key = ca.private_key
    algorithm: hashes.SHA256 | hashes.SHA384 | None = hashes.SHA256()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = None
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        algorithm = hashes.SHA384()
    certificate = builder.sign(key, algorithm)
    return certificate.public_bytes(serialization.Encoding.DER)
