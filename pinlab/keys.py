"""Pins of bare public keys: the only way to pin a backup key before it has a certificate.

A pin is SHA-256 over the DER SubjectPublicKeyInfo. A PEM ``PUBLIC KEY`` block and a DER
SPKI file *are* that DER, so it is hashed exactly as the file encodes it, once
cryptography has parsed it as a key (what OkHttp and ``openssl pkey -pubin -outform der |
openssl dgst -sha256`` hash). Only a PKCS#1 ``RSA PUBLIC KEY`` block, which holds no SPKI,
is re-encoded as one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from pinlab.errors import MalformedKeyError
from pinlab.pem import iter_pem

__all__ = ["PublicKeyPin", "is_public_key", "load_public_key", "load_public_key_file"]

_KEY_LABELS = (b"PUBLIC KEY", b"RSA PUBLIC KEY")
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_REFUSED = (ValueError, TypeError, UnsupportedAlgorithm)


@dataclass(frozen=True, slots=True)
class PublicKeyPin:
    """A public key's SPKI (DER), its ``sha256/`` pin and a short label (``P-256``)."""

    spki: bytes
    label: str

    @property
    def pin(self) -> str:
        """``sha256/`` + base64 of SHA-256 over the DER SubjectPublicKeyInfo."""
        return "sha256/" + base64.b64encode(hashlib.sha256(self.spki).digest()).decode()


def is_public_key(data: bytes) -> bool:
    """Whether ``data`` is written as a PEM public key (DER is told only by parsing)."""
    return b"-----BEGIN PUBLIC KEY-----" in data or b"-----BEGIN RSA PUBLIC KEY-----" in data


def load_public_key(data: bytes, *, source: str = "input") -> PublicKeyPin:
    """The key of a PEM ``PUBLIC KEY`` (or ``RSA PUBLIC KEY``) block or a DER SPKI.

    Raises :class:`MalformedKeyError` naming ``source`` when the bytes hold no key.
    """
    if b"-----BEGIN" in data:
        return _from_pem(data, source)
    try:
        key = serialization.load_der_public_key(data)
    except _REFUSED as error:
        raise MalformedKeyError(f"{source}: not a DER SubjectPublicKeyInfo ({error})") from None
    return PublicKeyPin(data, _label(key))


def _from_pem(data: bytes, source: str) -> PublicKeyPin:
    # Key headers are counted in C, and only the one key block is scanned: other blocks,
    # however many, cost no Python loop.
    headers = [data.find(b"-----BEGIN " + label + b"-----") for label in _KEY_LABELS]
    count = sum(data.count(b"-----BEGIN " + label + b"-----") for label in _KEY_LABELS)
    block = next(iter_pem(data[max(headers) :]), None) if count == 1 else None
    if block is None or not block.complete:
        found = "no complete" if count <= 1 else f"{count}"
        raise MalformedKeyError(f"{source}: {found} PUBLIC KEY block(s); give one key per file")
    label, body = block.label, block.body
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
        key = serialization.load_pem_public_key(block.text)
    except (*_REFUSED, binascii.Error) as error:
        raise MalformedKeyError(f"{source}: malformed {label.decode()} block ({error})") from None
    if label == b"RSA PUBLIC KEY":
        # PKCS#1 holds the bare RSA key: the SPKI a client hashes has to be built.
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return PublicKeyPin(der, _label(key))


def _label(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVES.get(key.curve.name, key.curve.name)
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA-{key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def load_public_key_file(path: str | Path) -> PublicKeyPin:
    """:func:`load_public_key` of a file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MalformedKeyError(f"{path}: cannot read: {error.strerror}") from None
    return load_public_key(data, source=str(path))
