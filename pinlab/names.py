"""Host names as a client matches them against a certificate: the one rule, in Python and SQL.

The rule is RFC 6125 §6.4 as cryptography's verifier applies it, with the wildcard limit of
mozilla::pkix and Chromium:

- names compare case-insensitively (RFC 4343); the reference name's one trailing dot is
  its absolute form and is dropped (``example.com.`` is ``example.com``); a SAN written
  with a trailing dot matches nothing, as cryptography refuses it;
- a wildcard is the whole left-most label (``*.example.com``) and stands for exactly one
  non-empty label (RFC 6125 §6.4.3); partial wildcards (``w*.example.com``) match nothing;
- a wildcard over a single label (``*.com``, ``*.test``) matches nothing: mozilla::pkix and
  Chromium refuse wildcards directly under a top-level domain (cryptography would accept
  them; :func:`pinlab.verify.verify_chain` applies this rule after it);
- an IP address (v4 dotted quad, v6 in any spelling) matches an IP SAN of the same address
  in canonical form, never a DNS wildcard (RFC 6125 §6.2.1, RFC 5952).

:func:`name_matches` is the rule; :func:`name_match_sql` renders the same rule for DuckDB (the
out-of-core replay), IPv6 spellings through :func:`canonical_address` registered as a
function. ``tests/test_names.py`` holds the Python rule, the SQL rule and cryptography's
verifier equal on one table of cases.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

# DuckDB is imported by the SQL rule only: a client checking one name (pinlab check) never
# pays for it.

__all__ = [
    "canonical_address",
    "lower_sans_sql",
    "name_match_sql",
    "name_matches",
    "register_sql_functions",
]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def canonical_address(text: str) -> str | None:
    """The RFC 5952 form of an IP address (``2001:DB8:0::1`` -> ``2001:db8::1``), or None."""
    address = _address(text)
    return None if address is None else address.compressed


def _reference(name: str) -> str:
    return name[:-1] if name.endswith(".") else name


def name_matches(name: str, sans: Sequence[str]) -> bool:
    """Whether a certificate with ``sans`` (DNS names and IP addresses) is valid for ``name``."""
    reference = _reference(name)
    address = _address(reference)
    if address is not None:
        return any(_address(san) == address for san in sans)
    reference = reference.lower()
    if not reference or "*" in reference:
        return False
    label, _, parent = reference.partition(".")
    wildcard = f"*.{parent}" if label and "." in parent else None
    return any(san.lower() in (reference, wildcard) for san in sans)


def name_match_sql(name: str, sans: str) -> str:
    """A DuckDB boolean expression of :func:`name_matches` for the SQL expressions ``name``
    and ``sans`` (a list of lower-cased SANs; :func:`lower_sans_sql` makes one).

    Needs :func:`register_sql_functions` on the connection (``pinlab_canonical_address``,
    for the names that are IP addresses).
    """
    reference = f"lower(regexp_replace({name}, '\\.$', ''))"
    canonical = f"pinlab_canonical_address({reference})"
    # Only a dotted quad or a name with a colon can be an address: the Python function is
    # called for those alone.
    maybe_address = f"regexp_matches({reference}, '^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$|:')"
    return f"""(CASE
    WHEN {maybe_address} AND {canonical} IS NOT NULL
        THEN list_contains(list_transform({sans}, {_lambdas()[1]}), {canonical})
    WHEN {reference} = '' OR contains({reference}, '*') THEN false
    ELSE list_contains({sans}, {reference})
        OR (regexp_matches({reference}, '^[^.]+\\..*\\..*$')
            AND list_contains({sans}, '*.' || regexp_extract({reference}, '^[^.]+\\.(.*)$', 1)))
    END)"""


def lower_sans_sql(sans: str) -> str:
    """The SQL list ``sans`` lower-cased, as :func:`name_match_sql` wants it."""
    return f"list_transform(coalesce({sans}, []), {_lambdas()[0]})"


def register_sql_functions(connection: duckdb.DuckDBPyConnection) -> None:
    """Give ``connection`` the functions :func:`name_match_sql` calls (once per connection)."""
    from duckdb.func import FunctionNullHandling

    known = connection.execute(
        "SELECT count(*) FROM duckdb_functions() WHERE function_name = 'pinlab_canonical_address'"
    ).fetchall()
    if known[0][0]:
        return
    connection.create_function(
        "pinlab_canonical_address",
        _canonical_or_none,
        ["VARCHAR"],
        "VARCHAR",
        null_handling=FunctionNullHandling.SPECIAL,
        side_effects=False,
    )


def _canonical_or_none(text: str | None) -> str | None:
    return None if text is None else canonical_address(text)


@functools.cache
def _lambdas() -> tuple[str, str]:
    """The lambdas of the SQL rule (lower-casing, canonical address) in this DuckDB's syntax."""
    import duckdb

    # DuckDB 1.3 brought ``lambda x: ...`` and deprecated ``x -> ...`` (refused from 1.5 on).
    if tuple(int(part) for part in duckdb.__version__.split(".")[:2]) >= (1, 3):
        return "lambda s: lower(s)", "lambda s: pinlab_canonical_address(s)"
    return "s -> lower(s)", "s -> pinlab_canonical_address(s)"
