"""Signed tree heads: RFC 6962 ``get-sth`` JSON and static-ct checkpoints (signed notes).

A tree head is only worth what its signature is: :meth:`SignedTreeHead.verify` checks the
``TreeHeadSignature`` (RFC 6962 section 3.5) with the log's public key, ECDSA P-256 or RSA,
as a ``DigitallySigned`` SHA-256 structure. A static-ct-api checkpoint carries the same
signature in a note signature line, so both formats end in the same record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from pinlab.ct.errors import CTError, LogMisbehaviourError

__all__ = [
    "LogKey",
    "SignedTreeHead",
    "checkpoint_text",
    "digitally_sign",
    "parse_checkpoint",
]

_SHA256, _RSA, _ECDSA = 4, 1, 3
_NOTE_DASH = "\u2014 "
_RFC6962_NOTE_TYPE = b"\x05"


@dataclass(frozen=True, slots=True)
class LogKey:
    """A log's public key; its SHA-256 over the DER SubjectPublicKeyInfo is the log ID."""

    spki: bytes = field(repr=False)
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey = field(repr=False, compare=False)

    @classmethod
    def from_der(cls, spki: bytes) -> LogKey:
        """From a DER SubjectPublicKeyInfo (the ``key`` of a log list, base64-decoded)."""
        try:
            key = serialization.load_der_public_key(spki)
        except ValueError as error:
            raise CTError(f"not a DER public key: {error}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise CTError(f"a CT log key is ECDSA or RSA, not {type(key).__name__}")
        return cls(spki, key)

    @classmethod
    def from_pem(cls, data: bytes) -> LogKey:
        """From PEM (``-----BEGIN PUBLIC KEY-----``) or a bare base64 DER SPKI."""
        text = data.strip()
        if text.startswith(b"-----BEGIN"):
            try:
                key = serialization.load_pem_public_key(text)
            except ValueError as error:
                raise CTError(f"not a PEM public key: {error}") from None
            der = key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return cls.from_der(der)
        try:
            return cls.from_der(base64.b64decode(text, validate=True))
        except binascii.Error:
            raise CTError("a log key is PEM or base64 DER") from None

    @classmethod
    def load(cls, path: str | Path) -> LogKey:
        """Read a PEM (or base64 DER) public key file."""
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise CTError(f"{path}: cannot read the log key: {error.strerror}") from None
        try:
            return cls.from_pem(data)
        except CTError as error:
            raise CTError(f"{path}: {error}") from None

    @property
    def log_id(self) -> bytes:
        """The RFC 6962 LogID."""
        return hashlib.sha256(self.spki).digest()

    def verify(self, data: bytes, signature: bytes, what: str) -> None:
        """Check a ``DigitallySigned`` over ``data``; :class:`LogMisbehaviourError` if bad."""
        if len(signature) < 4 or int.from_bytes(signature[2:4], "big") != len(signature) - 4:
            raise LogMisbehaviourError(f"{what}: malformed DigitallySigned structure")
        hash_alg, sig_alg, body = signature[0], signature[1], signature[4:]
        if hash_alg != _SHA256:
            raise LogMisbehaviourError(f"{what}: hash algorithm {hash_alg} is not SHA-256")
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                if sig_alg != _ECDSA:
                    raise LogMisbehaviourError(f"{what}: not an ECDSA signature (key is EC)")
                self.key.verify(body, data, ec.ECDSA(hashes.SHA256()))
            else:
                if sig_alg != _RSA:
                    raise LogMisbehaviourError(f"{what}: not an RSA signature (key is RSA)")
                self.key.verify(body, data, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise LogMisbehaviourError(
                f"{what}: signature does not verify with the log key (log ID "
                f"{base64.b64encode(self.log_id).decode()}): wrong key, or a forged tree head"
            ) from None


def digitally_sign(
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, data: bytes
) -> bytes:
    """A ``DigitallySigned`` SHA-256 signature over ``data`` (for test logs)."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        body, alg = private_key.sign(data, ec.ECDSA(hashes.SHA256())), _ECDSA
    else:
        body, alg = private_key.sign(data, padding.PKCS1v15(), hashes.SHA256()), _RSA
    return bytes([_SHA256, alg]) + len(body).to_bytes(2, "big") + body


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """A log's signed commitment to its first ``tree_size`` entries."""

    tree_size: int
    timestamp: int
    """Milliseconds since the epoch."""
    root_hash: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    """The ``DigitallySigned`` ``TreeHeadSignature``."""

    @property
    def signed_input(self) -> bytes:
        """The ``TreeHeadSignature`` bytes the signature covers."""
        return (
            b"\x00\x01"
            + self.timestamp.to_bytes(8, "big")
            + self.tree_size.to_bytes(8, "big")
            + self.root_hash
        )

    @property
    def at(self) -> datetime:
        """The timestamp as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp / 1000, tz=UTC)

    def verify(self, key: LogKey) -> None:
        """Check the signature; :class:`LogMisbehaviourError` naming the tree size if bad."""
        key.verify(self.signed_input, self.signature, f"STH of tree size {self.tree_size}")

    @classmethod
    def sign(
        cls,
        private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        *,
        tree_size: int,
        timestamp: int,
        root_hash: bytes,
    ) -> SignedTreeHead:
        """Sign a tree head (for test logs)."""
        unsigned = cls(tree_size, timestamp, root_hash, b"")
        return cls(
            tree_size, timestamp, root_hash, digitally_sign(private_key, unsigned.signed_input)
        )

    @classmethod
    def from_json(cls, data: Any) -> SignedTreeHead:
        """From a ``get-sth`` response; :class:`LogMisbehaviourError` if malformed."""
        try:
            sth = cls(
                int(data["tree_size"]),
                int(data["timestamp"]),
                base64.b64decode(data["sha256_root_hash"], validate=True),
                base64.b64decode(data["tree_head_signature"], validate=True),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            raise LogMisbehaviourError(f"get-sth: malformed response ({error!r})") from None
        if len(sth.root_hash) != 32 or sth.tree_size < 0:
            raise LogMisbehaviourError("get-sth: malformed response (root hash or size)")
        return sth

    def to_json(self) -> dict[str, Any]:
        """The ``get-sth`` response body."""
        return {
            "tree_size": self.tree_size,
            "timestamp": self.timestamp,
            "sha256_root_hash": base64.b64encode(self.root_hash).decode(),
            "tree_head_signature": base64.b64encode(self.signature).decode(),
        }


def _note_key_id(origin: str, log_id: bytes) -> bytes:
    return hashlib.sha256(origin.encode() + b"\n" + _RFC6962_NOTE_TYPE + log_id).digest()[:4]


def checkpoint_text(origin: str, sth: SignedTreeHead, log_id: bytes) -> str:
    """A static-ct-api checkpoint for ``sth``, signed with an RFC6962NoteSignature."""
    body = f"{origin}\n{sth.tree_size}\n{base64.b64encode(sth.root_hash).decode()}\n"
    signature = _note_key_id(origin, log_id) + sth.timestamp.to_bytes(8, "big") + sth.signature
    return f"{body}\n{_NOTE_DASH}{origin} {base64.b64encode(signature).decode()}\n"


def _rfc6962_note_signature(raw: bytes) -> bool:
    """Whether a note signature (after its 4-byte key ID) has the shape of an
    ``RFC6962NoteSignature``: ``uint64 timestamp`` then a ``DigitallySigned`` SHA-256
    ECDSA or RSA signature whose length field covers exactly the rest."""
    if len(raw) < 4 + 8 + 4:
        return False
    signed = raw[12:]
    return (
        signed[0] == _SHA256
        and signed[1] in (_ECDSA, _RSA)
        and int.from_bytes(signed[2:4], "big") == len(signed) - 4 > 0
    )


def parse_checkpoint(
    text: str, *, key: LogKey | None, origin: str | None = None
) -> tuple[str, SignedTreeHead]:
    """Parse a checkpoint; return its origin and tree head (signature checked if ``key``).

    The tree head is the note signature line that static-ct-api defines: key name equal
    to the origin, key ID the first 4 bytes of ``SHA-256(name || 0x0A || 0x05 || LogID)``
    (0x05 is the RFC 6962 signature type). A checkpoint may carry other lines under the
    same name (an Ed25519 note key, witness cosignatures): those are ignored, as the
    signed-note spec requires. Without ``key`` the LogID, hence the key ID, is unknown:
    the line taken is then the one whose signature is an ``RFC6962NoteSignature``
    (timestamp, then a SHA-256 ECDSA/RSA ``DigitallySigned``), and two such lines with
    different key IDs are refused as ambiguous (pass the log key).
    """
    body, separator, signatures = text.partition("\n\n")
    lines = body.split("\n")
    if not separator or len(lines) < 3:
        raise LogMisbehaviourError("checkpoint: not a signed note (origin, size, root, signature)")
    if len(lines) > 3:
        raise LogMisbehaviourError(
            "checkpoint: extension lines, which a checkpoint with an RFC 6962 signature must "
            "not have (static-ct-api)"
        )
    name = lines[0]
    if origin is not None and name != origin:
        raise LogMisbehaviourError(f"checkpoint: origin {name!r}, expected {origin!r}")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error):
        raise LogMisbehaviourError("checkpoint: tree size or root hash malformed") from None
    if len(root) != 32 or size < 0 or not lines[1].isdigit():
        raise LogMisbehaviourError("checkpoint: tree size or root hash malformed")
    wanted = _note_key_id(name, key.log_id) if key is not None else None
    found: dict[bytes, bytes] = {}  # key ID -> signature, of the RFC 6962 lines by the log
    for line in signatures.splitlines():
        if not line.startswith(_NOTE_DASH):
            continue
        signer, _, encoded = line[len(_NOTE_DASH) :].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if signer != name or len(raw) < 5:
            continue
        ours = raw[:4] == wanted if wanted is not None else _rfc6962_note_signature(raw)
        if ours:
            found.setdefault(raw[:4], raw)
    if len(found) > 1:
        raise LogMisbehaviourError(
            f"checkpoint: {len(found)} RFC 6962-shaped signatures by {name!r} under different "
            "key IDs; pass the log's public key to select the log's own"
        )
    if not found:
        raise LogMisbehaviourError(
            f"checkpoint: no RFC 6962 note signature by {name!r}"
            + (" with the given log key" if key is not None else "")
        )
    raw = next(iter(found.values()))
    if len(raw) < 16:
        raise LogMisbehaviourError("checkpoint: RFC 6962 note signature truncated")
    sth = SignedTreeHead(size, int.from_bytes(raw[4:12], "big"), root, raw[12:])
    if key is not None:
        sth.verify(key)
    return name, sth
