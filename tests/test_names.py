"""One host-name rule (pinlab.names), equal in Python, in DuckDB SQL and in path validation.

The table cites the rule each case holds: RFC 6125 §6.4 (DNS-ID matching), §6.4.3
(wildcard as the whole left-most label, one label), RFC 4343 (case), RFC 5952 (IPv6 text
forms), mozilla::pkix ``MatchPresentedDNSIDWithReferenceDNSID`` (no wildcard directly under
a top-level domain).
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from pinlab.names import (
    canonical_address,
    lower_sans_sql,
    name_match_sql,
    name_matches,
    register_sql_functions,
)
from pinlab.testbed.pki import CA
from pinlab.verify import TrustStore, VerificationFailure, verify_chain

AT = datetime(2026, 1, 1, tzinfo=UTC)

# (reference name, SANs of the leaf, matches)
CASES: list[tuple[str, tuple[str, ...], bool]] = [
    ("www.example.com", ("www.example.com",), True),  # RFC 6125 §6.4.1
    ("WWW.Example.COM", ("www.example.com",), True),  # RFC 4343: case-insensitive
    ("www.example.com", ("WWW.EXAMPLE.COM",), True),
    ("www.example.com.", ("www.example.com",), True),  # absolute form of the same name
    ("www.example.com", ("www.example.com.",), False),  # a SAN with a dot: refused
    ("b.test", ("a.test",), False),
    ("x.example.com", ("*.example.com",), True),  # RFC 6125 §6.4.3
    ("X.Example.Com.", ("*.example.com",), True),
    ("example.com", ("*.example.com",), False),  # the wildcard is one label, not zero
    ("a.b.example.com", ("*.example.com",), False),  # ... nor two
    ("www.example.com", ("w*.example.com",), False),  # partial wildcards: refused
    ("*.example.com", ("*.example.com",), False),  # a reference name is never a pattern
    ("example.com", ("*.com",), False),  # mozilla::pkix: no wildcard under a TLD
    ("a.test", ("*.test",), False),
    ("example.co.uk", ("*.co.uk",), True),  # no public suffix list: two labels suffice
    ("", ("a.test",), False),
    (".", ("a.test",), False),
    ("127.0.0.1", ("127.0.0.1",), True),  # RFC 6125 §6.2.1: IP-ID
    ("127.0.0.1", ("localhost",), False),
    ("127.0.0.1", ("127.0.0.2",), False),
    ("::1", ("::1",), True),
    ("0:0:0:0:0:0:0:1", ("::1",), True),  # RFC 5952: any text form of one address
    ("2001:DB8::1", ("2001:db8::1",), True),
    ("2001:db8:0::1", ("2001:db8::1",), True),
    ("2001:db8::2", ("2001:db8::1",), False),
    ("::ffff:127.0.0.1", ("127.0.0.1",), False),  # v4-mapped v6 is another address
    ("1.2.3.4", ("*.2.3.4",), False),  # addresses never match DNS wildcards
]


@pytest.mark.parametrize(("name", "sans", "expected"), CASES)
def test_python_rule(name: str, sans: tuple[str, ...], expected: bool) -> None:
    assert name_matches(name, sans) is expected


def test_sql_rule_equals_the_python_rule() -> None:
    con = duckdb.connect()
    register_sql_functions(con)
    register_sql_functions(con)  # idempotent
    con.execute("CREATE TABLE cases (i INTEGER, name VARCHAR, sans VARCHAR[])")
    con.executemany(
        "INSERT INTO cases VALUES (?, ?, ?)",
        [(i, name, list(sans)) for i, (name, sans, _) in enumerate(CASES)],
    )
    expression = name_match_sql("name", lower_sans_sql("sans"))
    got = dict(con.execute(f"SELECT i, {expression} FROM cases ORDER BY i").fetchall())
    assert got == {i: expected for i, (_, _, expected) in enumerate(CASES)}


@pytest.mark.parametrize(("name", "sans", "expected"), [c for c in CASES if c[0] not in ("", ".")])
def test_path_validation_applies_the_same_rule(
    name: str, sans: tuple[str, ...], expected: bool
) -> None:
    root = CA.root("Names Root")
    try:
        leaf = root.issue_leaf(*sans)
    except ValueError:
        pytest.fail(f"the test PKI cannot issue {sans}")
    trust = TrustStore.from_certificates([root.record], name="names")
    result = verify_chain([leaf.record], hostname=name, at=AT, trust_store=trust)
    assert result.ok is expected, result.error
    if not expected:
        assert result.failure in (VerificationFailure.HOSTNAME, VerificationFailure.UNTRUSTED)


def test_canonical_address() -> None:
    assert canonical_address("2001:DB8:0:0::1") == "2001:db8::1"
    assert canonical_address("127.0.0.1") == "127.0.0.1"
    assert canonical_address("127.1") is None  # shorthand is a DNS name, not an address
    assert canonical_address("example.com") is None
