"""Why a chain failed path validation, in one line a person understands.

cryptography's verifier says what its path builder met (``candidates exhausted: all
candidates exhausted with no interior errors``, ``(encountered processing
<Certificate(...)>)``), which is true but not what a person needs to hear. This module looks
at the chain itself, walking issuer names from the leaf as a path builder would, and names
the first thing a person can act on: an expired or not-yet-valid certificate, an issuer that
was not sent and is not in the trust store, a root that is not trusted, a self-signed leaf.
When none of those explains the failure (a bad signature, a broken constraint), the
verifier's own text is kept, cleaned of its Python reprs. The raw text stays available
beside the message (:attr:`pinlab.verify.Verification.detail`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinlab.certs import Certificate

__all__ = ["clean_detail", "explain_failure"]

# Longer than any real path (the verifier stops at 8 intermediates); guards issuer loops.
_MAX_DEPTH = 10
_PROCESSING = re.compile(
    r"\s*\(encountered processing <Certificate\(subject=<Name\((?P<name>.*?)\)>, \.\.\.\)>\)"
)
_PREFIXES = ("validation failed: ", "candidates exhausted: ")


def explain_failure(
    chain: Sequence[Certificate],
    *,
    name: str,
    at: datetime,
    anchors: Sequence[Certificate],
    detail: str,
) -> str:
    """One line on why ``chain`` (leaf first) has no valid path for ``name`` at ``at``.

    ``anchors`` are the trust store's roots; ``detail`` is the verifier's own error text, used
    when the chain's names and dates do not explain the failure.
    """
    trusted = {anchor.sha256 for anchor in anchors}
    leaf = chain[0]
    if at > leaf.not_after:
        return f"certificate for {name} expired on {_day(leaf.not_after)}"
    if at < leaf.not_before:
        return f"certificate for {name} is not valid before {_day(leaf.not_before)}"
    if leaf.self_issued and leaf.sha256 not in trusted and not leaf.is_ca:
        return f"certificate for {name} is self-signed and not in the trust store"
    current, seen = leaf, {leaf.sha256}
    for _ in range(_MAX_DEPTH):
        if current.sha256 in trusted:
            break
        if current.self_issued:
            return (
                f"no path to a trusted root: the chain ends at {_short(current)}, "
                "which is not in the trust store"
            )
        anchor = _issued_by(current, anchors)
        if anchor is not None:
            return _dated(anchor, at, "trust store root") or clean_detail(detail)
        issuer = _issued_by(current, [c for c in chain if c.sha256 not in seen])
        if issuer is None:
            return (
                f"no path to a trusted root: the issuer {_issuer_name(current)} was not sent "
                "and is not in the trust store"
            )
        dated = _dated(issuer, at, "intermediate")
        if dated is not None:
            return dated
        current = issuer
        seen.add(current.sha256)
    return clean_detail(detail)


def clean_detail(detail: str) -> str:
    """The verifier's text without its prefixes and Python reprs (one line, still exact)."""
    text = detail
    for prefix in _PREFIXES:
        text = text.removeprefix(prefix)
    return _PROCESSING.sub(lambda m: f" (certificate {m['name']})", text).strip()


def _issued_by(certificate: Certificate, candidates: Sequence[Certificate]) -> Certificate | None:
    """The candidate whose subject is ``certificate``'s issuer name (the first one sent)."""
    wanted = certificate.x509.issuer
    return next((c for c in candidates if c.x509.subject == wanted), None)


def _dated(certificate: Certificate, at: datetime, role: str) -> str | None:
    if at > certificate.not_after:
        return f"the {role} {_short(certificate)} expired on {_day(certificate.not_after)}"
    if at < certificate.not_before:
        return (
            f"the {role} {_short(certificate)} is not valid before {_day(certificate.not_before)}"
        )
    return None


def _short(certificate: Certificate) -> str:
    return _first_cn(certificate.subject)


def _issuer_name(certificate: Certificate) -> str:
    return _first_cn(certificate.issuer)


def _first_cn(name: str) -> str:
    """``CN=...`` of an RFC 4514 name when it has one (what people call a CA), else all of it."""
    for part in re.split(r"(?<!\\),", name):
        if part.startswith("CN="):
            return part
    return name


def _day(moment: datetime) -> str:
    """The day, and the time too when it is not midnight (a check can be a second late)."""
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
