"""The one exception tree of pinlab.

Failures met while observing the world (a refused connection, a bad certificate served by a
host) are *data* and become status rows; these exceptions are for input the caller gave us
that cannot be used, and each message says what was wrong and, where it helps, what to do.
"""

from __future__ import annotations

__all__ = [
    "MalformedCertificateError",
    "MalformedKeyError",
    "MalformedPinError",
    "PinlabError",
    "TargetError",
]


class PinlabError(Exception):
    """Root of every error pinlab raises on purpose."""


class MalformedCertificateError(PinlabError, ValueError):
    """Bytes that should hold a certificate (PEM, DER or PKCS#7) do not."""


class MalformedKeyError(PinlabError, ValueError):
    """Bytes that should hold a public key (PEM ``PUBLIC KEY``, DER SPKI) do not."""


class MalformedPinError(PinlabError, ValueError):
    """A pin string is not `sha256/<base64>`, `sha1/<base64>` or a hex SHA-256 digest."""


class TargetError(PinlabError, ValueError):
    """A target (`host[:port]`, `[v6]:port`, ...) cannot be parsed."""
