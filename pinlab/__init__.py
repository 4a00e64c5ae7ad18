"""pinlab: decide, from data, how to pin TLS public keys."""

from typing import TYPE_CHECKING

from pinlab.lazy import lazy_attributes

if TYPE_CHECKING:
    from pinlab.certs import Certificate, load_certificate_file, load_certificates
    from pinlab.errors import (
        MalformedCertificateError,
        MalformedPinError,
        PinlabError,
        TargetError,
    )
    from pinlab.pins import CheckStatus, Pin, PinCheckResult, PinSet, Semantics
    from pinlab.verify import TrustStore, Verification, VerificationFailure, verify_chain

# The names below are imported on first use, so that ``pinlab --help`` does not load
# cryptography (pinlab.lazy).
__getattr__ = lazy_attributes(
    __name__,
    {
        **dict.fromkeys(
            ["Certificate", "load_certificate_file", "load_certificates"], "pinlab.certs"
        ),
        **dict.fromkeys(
            ["MalformedCertificateError", "MalformedPinError", "PinlabError", "TargetError"],
            "pinlab.errors",
        ),
        **dict.fromkeys(
            ["CheckStatus", "Pin", "PinCheckResult", "PinSet", "Semantics"], "pinlab.pins"
        ),
        **dict.fromkeys(
            ["TrustStore", "Verification", "VerificationFailure", "verify_chain"], "pinlab.verify"
        ),
    },
)

__version__ = "0.1.0"

__all__ = [
    "Certificate",
    "CheckStatus",
    "MalformedCertificateError",
    "MalformedPinError",
    "Pin",
    "PinCheckResult",
    "PinSet",
    "PinlabError",
    "Semantics",
    "TargetError",
    "TrustStore",
    "Verification",
    "VerificationFailure",
    "__version__",
    "load_certificate_file",
    "load_certificates",
    "verify_chain",
]
