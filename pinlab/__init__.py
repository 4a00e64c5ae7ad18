"""pinlab: decide, from data, how to pin TLS public keys."""

from pinlab.certs import Certificate, load_certificate_file, load_certificates
from pinlab.errors import MalformedCertificateError, MalformedPinError, PinlabError, TargetError
from pinlab.pins import CheckStatus, Pin, PinCheckResult, PinSet, Semantics
from pinlab.verify import TrustStore, Verification, VerificationFailure, verify_chain

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
