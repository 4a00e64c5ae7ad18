"""The rules both derivations share: key labels, CA organisation, precertificates, lineages.

Each rule that the SQL path also states in SQL has its twin here (``*_SQL``), so the two
can be read side by side and tested against each other.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, NamedTuple

import duckdb
from cryptography import x509

__all__ = [
    "CA_ORG_SQL",
    "CONTINUES_SQL",
    "HOST_KEY",
    "KEY_LABEL_SQL",
    "LEDGER_COLUMNS",
    "POISON_OID_DER",
    "SIGHTING_COLUMNS",
    "assign_lineages",
    "ca_organisation",
    "continues",
    "is_precertificate",
    "key_label",
    "served_until",
]

HOST_KEY = ["host", "port", "sni"]

SIGHTING_COLUMNS = [
    "host", "port", "sni", "leaf", "lineage", "first_seen", "last_seen", "sightings",
    "spki_sha256", "key_label", "key_type", "key_size", "subject", "issuer", "serial",
    "issuer_spki", "root", "ca_org", "not_before", "not_after", "validity_days",
    "precertificate", "seen_once",
]  # fmt: skip

LEDGER_COLUMNS = [
    "host", "port", "sni", "lineage", "old_sha256", "new_sha256",
    "old_last_seen", "new_first_seen", "new_last_seen",
    "key_reused", "key_seen_before", "issuer_changed", "issuer_key_changed",
    "root_changed", "ca_org_changed", "key_type_changed",
    "old_key_type", "old_key_size", "new_key_type", "new_key_size",
    "gap_days", "renewal_interval_days", "old_validity_days", "new_validity_days",
    "old_issuer", "new_issuer", "old_ca_org", "new_ca_org", "new_seen_once",
]  # fmt: skip

# -- key label ---------------------------------------------------------------------------

_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def key_label(key_type: Any, key_size: Any, curve: Any) -> str:
    """``RSA-2048``, ``P-256``, ``Ed25519``...: :attr:`pinlab.certs.Certificate.key_label`
    from the store's columns; ``unknown`` for a certificate that did not parse."""
    if not _missing(curve):
        return _CURVES.get(str(curve), str(curve))
    if _missing(key_type):
        return "unknown"
    if not _missing(key_size) and key_type in {"RSA", "RSA-PSS", "DSA"}:
        return f"{key_type}-{int(key_size)}"
    return str(key_type)


KEY_LABEL_SQL = """CASE
    WHEN curve IS NOT NULL THEN CASE curve WHEN 'secp256r1' THEN 'P-256'
        WHEN 'secp384r1' THEN 'P-384' WHEN 'secp521r1' THEN 'P-521' ELSE curve END
    WHEN key_type IS NULL THEN 'unknown'
    WHEN key_size IS NOT NULL AND key_type IN ('RSA', 'RSA-PSS', 'DSA')
        THEN key_type || '-' || key_size
    ELSE key_type END"""

# -- CA organisation from the issuer's RFC 4514 string -----------------------------------

# One attribute per match: a separator (start, or an unescaped "," or "+" between RDNs or
# within a multi-valued RDN), then TYPE=VALUE where the value runs to the next unescaped
# separator. Matching attribute after attribute means an escaped "\," inside a value is
# never taken for a separator. Group 1 holds the value of an ``O`` attribute, else "".
_ATTRIBUTE = r"(?:^|[,+])(?:O=((?:[^\\,+]|\\.)*)|[^=,+]+=(?:[^\\,+]|\\.)*)"
_ESCAPE = r"\\(.)"


def ca_organisation(issuer: Any) -> str | None:
    """The issuer's organisation (O) from the store's RFC 4514 ``issuer`` string.

    The certificate's first O, which RFC 4514 writes last (it reverses the RDN order);
    escapes (``\\,``, ``\\+``, ``\\\\``...) undone. None when there is no (non-empty) O.
    """
    if _missing(issuer):
        return None
    values = [value for value in re.findall(_ATTRIBUTE, str(issuer)) if value]
    return re.sub(_ESCAPE, r"\1", values[-1]) if values else None


# DuckDB 1.3 brought ``lambda x: ...`` and deprecated ``x -> ...`` (refused from 1.5 on).
_NON_EMPTY = (
    "lambda value: value <> ''"
    if tuple(int(part) for part in duckdb.__version__.split(".")[:2]) >= (1, 3)
    else "value -> value <> ''"
)
CA_ORG_SQL = f"""nullif(regexp_replace(list_filter(
    regexp_extract_all(issuer, '{_ATTRIBUTE}', 1), {_NON_EMPTY})[-1],
    '{_ESCAPE}', '\\1', 'g'), '')"""

# -- precertificates ---------------------------------------------------------------------

POISON_OID_DER = bytes.fromhex("060a2b06010401d679020403")
"""DER of the CT poison extension's OID (1.3.6.1.4.1.11129.2.4.3), as it appears in a
precertificate: a byte search finds the candidates, parsing confirms them."""


def is_precertificate(der: Any) -> bool:
    """Whether ``der`` is a precertificate (carries the critical CT poison extension)."""
    if _missing(der) or POISON_OID_DER not in bytes(der):
        return False
    try:
        certificate = x509.load_der_x509_certificate(bytes(der))
        certificate.extensions.get_extension_for_class(x509.PrecertPoison)
    except (ValueError, TypeError, x509.ExtensionNotFound):
        return False
    return True


# -- lineages ----------------------------------------------------------------------------


def continues(tail_first: int, tail_last: int, first: int, last: int) -> bool:
    """Whether a leaf served from ``first`` to ``last`` succeeds a lineage's current leaf.

    ``tail_first`` is when the current leaf (the tail) was first served, ``tail_last`` its
    last sighting up to ``last`` (:func:`served_until`: a tail that comes back after the new
    leaf's span, a rollback, is not served alongside it). The new leaf succeeds the tail
    when the tail appeared earlier and had stopped before the new leaf appeared, or stops
    first after being served alongside it for less than half of the new leaf's span (a
    roll-out across IPs, a CDN hand-over); otherwise both are served in parallel. Key
    types do not enter. Times are integers (microseconds), so the SQL twin computes
    exactly the same.
    """
    if tail_first >= first:
        return False
    if tail_last < first:
        return True
    return tail_last < last and 2 * (tail_last - first) < last - first


CONTINUES_SQL = """(tail_first < first AND (tail_last < first
    OR (tail_last < last AND 2 * (tail_last - first) < last - first)))"""
"""The twin of :func:`continues`, on the tail's last sighting of all: a smaller
``tail_last`` only makes :func:`continues` truer, so a host whose every leaf continues the
one before by this test is one lineage by the full rule too."""


def served_until(times: Sequence[int], last: int) -> int:
    """The latest of ``times`` (sorted sightings) at or before ``last`` (the first sighting
    when there is none, which cannot happen for a tail first seen before ``last``)."""
    index = bisect.bisect_right(times, last)
    return times[index - 1] if index else times[0]


class _Tail(NamedTuple):
    first: int
    last: int
    label: str
    times: Sequence[int]
    lineage: int


def assign_lineages(
    rows: Iterable[tuple[Hashable, int, int, str, Sequence[int]]],
) -> list[tuple[str, int]]:
    """The lineage of each leaf, as (label, index): named ``<label>#<index>``.

    ``rows`` are (group, first, last, key label, sorted sighting times) in group order and,
    within a group (a host, port and SNI), by first then last sighting (then leaf digest,
    so both derivations agree). A leaf continues a lineage whose current leaf it can
    succeed (:func:`continues`, whatever their key types); of several, one whose current
    leaf has the same key label (so a dual RSA/ECDSA host renewing both stays two
    lineages, RSA after RSA), then the one last served, then the one opened first. Leaves
    first seen at the same instant (which cannot continue each other) take lineages in two
    passes: those that can continue a lineage of their own key label first, in order, then
    the others. A leaf that continues no lineage opens one, labelled with its own key
    label and numbered from 0 among the group's lineages of that label.
    """
    names: list[tuple[str, int]] = []
    state = _Lineages(group=object())
    batch: list[tuple[int, int, str, Sequence[int]]] = []
    for key, first, last, label, times in rows:
        if batch and (key != state.group or first != batch[0][0]):
            names.extend(state.take(batch))
            batch = []
        if key != state.group:
            state = _Lineages(group=key)
        batch.append((first, last, label, times))
    if batch:
        names.extend(state.take(batch))
    return names


class _Lineages:
    """The lineages of one group so far: their names and current leaves (tails)."""

    def __init__(self, group: Hashable) -> None:
        self.group = group
        self.names: list[tuple[str, int]] = []
        self.tails: list[_Tail] = []

    def take(self, batch: list[tuple[int, int, str, Sequence[int]]]) -> list[tuple[str, int]]:
        """Lineages of leaves first seen at one instant, in the batch's order."""
        chosen: list[int | None] = [None] * len(batch)
        for same_label in (True, False):
            for position, (first, last, label, times) in enumerate(batch):
                if chosen[position] is not None:
                    continue
                tail = self._best(first, last, label, same_label=same_label)
                if tail is not None:  # the new tail, first seen now, is no one else's
                    chosen[position] = tail
                    self.tails[tail] = _Tail(first, last, label, times, self.tails[tail].lineage)
        lineages = []
        for position, (first, last, label, times) in enumerate(batch):
            tail = chosen[position]
            if tail is None:
                count = sum(1 for name, _ in self.names if name == label)
                self.names.append((label, count))
                self.tails.append(_Tail(first, last, label, times, len(self.names) - 1))
                lineages.append(self.names[-1])
            else:
                lineages.append(self.names[self.tails[tail].lineage])
        return lineages

    def _best(self, first: int, last: int, label: str, *, same_label: bool) -> int | None:
        """The tail the leaf continues: same key label first, then the one last served."""
        best: int | None = None
        for index, tail in enumerate(self.tails):
            if same_label and tail.label != label:
                continue
            if not continues(tail.first, served_until(tail.times, last), first, last):
                continue
            if best is None or tail.last > self.tails[best].last:
                best = index
        return best
