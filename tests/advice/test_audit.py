"""Audit: the four pin configuration formats, their lint, and their score against history."""

from __future__ import annotations

import json
import plistlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
import pandas as pd
import pytest
from typer.testing import CliRunner

from pinlab.advice.audit import (
    FINDING_COLUMNS,
    SCORE_COLUMNS,
    ConfigError,
    PinRule,
    lint,
    parse_config,
    score,
)
from pinlab.advice.platforms import entry_matches
from pinlab.certs import Certificate, load_certificate_file
from pinlab.cli import app
from pinlab.pins import Pin
from pinlab.store import ChainSighting, frames_from_chains
from pinlab.survival import ObservedChain, observed_chains
from pinlab.testbed.pki import CA, KeyType, pooled_key
from pinlab.verify import TrustStore
from tests.conftest import real_leaves

T0 = datetime(2024, 1, 1, tzinfo=UTC)
AT = datetime(2026, 1, 1, tzinfo=UTC)
PIN_A = "sha256/" + "A" * 43 + "="
PIN_B = "sha256/" + "B" * 43 + "="
BARE_A, BARE_B = PIN_A.removeprefix("sha256/"), PIN_B.removeprefix("sha256/")


def _key(rule: PinRule) -> str:
    """OkHttp's spelling of an entry, to compare entries across formats."""
    below = rule.include_subdomains and rule.platform != "okhttp"
    return f"**.{rule.domain}" if below else rule.domain


def _rules(text: str | bytes, name: str) -> dict[str, PinRule]:
    data = text.encode() if isinstance(text, str) else text
    return {_key(rule): rule for rule in parse_config(data, name=name).rules}


# -- the four formats ---------------------------------------------------------------------


def test_okhttp_kotlin_and_java_pins_add_up_per_pattern() -> None:
    kotlin = f'''
        val pinner = CertificatePinner.Builder()
            .add("api.example.com", "{PIN_A}")
            .add("**.example.org",
                 "{PIN_A}",
                 "{PIN_B}")
            .add("api.example.com", "{PIN_B}")
            .build()
    '''
    config = parse_config(kotlin.encode(), name="Pins.kt")
    assert config.format == "okhttp"
    rules = {rule.pattern: rule for rule in config.rules}
    assert set(rules) == {"api.example.com", "**.example.org"}
    assert rules["api.example.com"].pins == (Pin.parse(PIN_A), Pin.parse(PIN_B))
    assert rules["api.example.com"].where == "Pins.kt:3"
    assert entry_matches(rules["**.example.org"], "example.org")
    assert entry_matches(rules["**.example.org"], "a.b.example.org")
    assert not entry_matches(rules["api.example.com"], "www.example.com")
    java = f'new CertificatePinner.Builder().add("*.example.net", "{PIN_A}").build();'
    (rule,) = parse_config(java.encode(), name="Pins.java").rules
    assert rule.pattern == "*.example.net"
    assert entry_matches(rule, "www.example.net")
    assert not entry_matches(rule, "example.net")


def test_android_network_security_config() -> None:
    xml = f"""<?xml version="1.0" encoding="utf-8"?>
    <network-security-config>
        <domain-config>
            <domain includeSubdomains="true">example.com</domain>
            <pin-set expiration="2025-06-01">
                <pin digest="SHA-256">{BARE_A}</pin>
                <pin digest="SHA-256">{BARE_B}</pin>
            </pin-set>
            <domain-config>
                <domain>inherits.example.org</domain>
            </domain-config>
        </domain-config>
        <domain-config><domain>unpinned.example.com</domain></domain-config>
    </network-security-config>"""
    config = parse_config(xml.encode(), name="network_security_config.xml")
    assert config.format == "android-nsc"
    rules = {_key(rule): rule for rule in config.rules}
    # The unpinned domain-config is an entry too: it governs its host, with no pins.
    assert set(rules) == {"**.example.com", "inherits.example.org", "unpinned.example.com"}
    assert rules["unpinned.example.com"].pins == ()
    assert rules["**.example.com"].expires_at == datetime(2025, 6, 1, tzinfo=UTC)
    assert rules["inherits.example.org"].pins == (Pin.parse(PIN_A), Pin.parse(PIN_B))
    assert rules["inherits.example.org"].expires_at == datetime(2025, 6, 1, tzinfo=UTC)


def test_trustkit_as_json_and_as_plist() -> None:
    domains = {
        "example.com": {
            "TSKPublicKeyHashes": [BARE_A, BARE_B], "TSKIncludeSubdomains": True,
            "TSKExpirationDate": "2027-12-01", "TSKEnforcePinning": False,
        }
    }  # fmt: skip
    from_json = _rules(
        json.dumps({"TSKSwizzleNetworkDelegates": True, "TSKPinnedDomains": domains}),
        "trustkit.json",
    )
    rule = from_json["**.example.com"]
    assert rule.pins == (Pin.parse(PIN_A), Pin.parse(PIN_B))
    assert rule.expires_at == datetime(2027, 12, 1, tzinfo=UTC)
    assert not rule.enforced
    as_plist = dict(domains["example.com"], TSKExpirationDate=datetime(2027, 12, 1, tzinfo=UTC))
    data = plistlib.dumps({"TSKConfiguration": {"TSKPinnedDomains": {"example.com": as_plist}}})
    config = parse_config(data, name="Info.plist")
    assert config.format == "trustkit"
    assert config.rules == (rule,) or config.rules[0].pins == rule.pins
    assert config.rules[0].expires_at == rule.expires_at
    binary = plistlib.dumps({"TSKPinnedDomains": domains}, fmt=plistlib.FMT_BINARY)
    assert parse_config(binary, name="TrustKit").rules[0].pins == rule.pins


@pytest.fixture(scope="module")
def pki() -> dict[str, CA]:
    root = CA.root("audit root")
    return {"root": root, "one": root.child_ca("audit issuer one"),
            "two": root.child_ca("audit issuer two")}  # fmt: skip


def test_ns_pinned_domains_needs_a_match_in_each_category(pki: dict[str, CA]) -> None:
    leaf = pki["one"].issue_leaf("ios.test", key=pooled_key(KeyType.P256, 0)).record
    other_leaf = pki["one"].issue_leaf("ios.test", key=pooled_key(KeyType.P256, 1)).record
    ca_pin = pki["one"].record.pin.removeprefix("sha256/")
    plist = {
        "NSAppTransportSecurity": {"NSPinnedDomains": {"ios.test": {
            "NSIncludesSubdomains": False,
            "NSPinnedLeafIdentities": [{"SPKI-SHA256-BASE64": leaf.pin.removeprefix("sha256/")}],
            "NSPinnedCAIdentities": [{"SPKI-SHA256-BASE64": ca_pin}],
        }}}
    }  # fmt: skip
    config = parse_config(plistlib.dumps(plist), name="Info.plist")
    assert config.format == "ns-pinned-domains"
    (rule,) = config.rules
    root, one, two = pki["root"].record, pki["one"].record, pki["two"].record
    assert rule.accepts((leaf, one, root), T0) is True
    assert rule.accepts((other_leaf, one, root), T0) is False  # the CA matches, the leaf not
    leaf_under_two = pki["two"].issue_leaf("ios.test", key=pooled_key(KeyType.P256, 0)).record
    assert rule.accepts((leaf_under_two, two, root), T0) is False  # the leaf, not the CA
    # The CA pin never matches the leaf position.
    ca_only = parse_config(
        plistlib.dumps(
            {
                "NSPinnedDomains": {
                    "ios.test": {
                        "NSPinnedCAIdentities": [
                            {"SPKI-SHA256-BASE64": leaf.pin.removeprefix("sha256/")}
                        ]
                    }
                }
            }
        ),
        name="ca.plist",
    ).rules[0]
    assert ca_only.accepts((leaf, one, root), T0) is False


MALFORMED = [
    ("Pins.kt", "val x = CertificatePinner.Builder().build()", "not a pin configuration"),
    ("nsc.xml", "<network-security-config><domain-config>", "not well-formed XML"),
    ("nsc.xml", "<manifest/>", "neither a plist nor an Android <network-security-config>"),
    ("tk.json", '{"TSKPinnedDomains": ', "not a pin configuration pinlab reads"),
    ("tk.json", '{"something": "else"}', "neither a TrustKit configuration"),
    ("Info.plist", b"<plist><dict><key>x</key>", "not well-formed XML"),
    ("notes.txt", "hello", "not a pin configuration pinlab reads"),
    # A word in a comment decides nothing: this is no OkHttp source.
    ("notes.kt", "// CertificatePinner .add(x, y)\nfun main() {}", "not a pin configuration"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "message"), MALFORMED)
def test_unreadable_files_fail_with_one_clear_line(
    name: str, content: str | bytes, message: str
) -> None:
    data = content.encode() if isinstance(content, str) else content
    with pytest.raises(ConfigError) as caught:
        parse_config(data, name=name)
    text = str(caught.value)
    assert message in text
    assert text.startswith(name)
    assert "\n" not in text


BAD_ENTRIES = [
    ("Pins.kt", 'CertificatePinner.Builder().add("a.com", "sha256/notbase64!")'
     '.add("b.com", "' + PIN_B + '").build()', "app-crash", "sha256/notbase64!"),
    ("nsc.xml", "<network-security-config><domain-config><domain>a.com</domain><pin-set>"
     '<pin digest="SHA-1">AAAA</pin></pin-set></domain-config>'
     "<domain-config><domain>b.com</domain></domain-config></network-security-config>",
     "app-crash", "Android accepts only SHA-256"),
    ("nsc.xml", "<network-security-config><domain-config><domain>a.com</domain>"
     '<pin-set expiration="next year"><pin digest="SHA-256">' + BARE_A + "</pin></pin-set>"
     "</domain-config><domain-config><domain>b.com</domain></domain-config>"
     "</network-security-config>", "app-crash", "is not a yyyy-MM-dd date"),
    ("tk.json", '{"TSKPinnedDomains": {"a.com": {"TSKPublicKeyHashes": ["AAAA", "'
     + BARE_B + '"]}, "b.com": {"TSKPublicKeyHashes": ["' + BARE_A + '", "' + BARE_B + '"]}}}',
     "app-crash", "32 bytes"),
    ("Info.plist", plistlib.dumps({"NSPinnedDomains": {
        "a.com": {"NSPinnedLeafIdentities": []},
        "b.com": {"NSPinnedCAIdentities": [{"SPKI-SHA256-BASE64": BARE_A}]}}}),
     "refuses-all", "ATS refuses every connection"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "code", "message"), BAD_ENTRIES)
def test_one_bad_entry_is_a_finding_and_the_rest_is_read(
    name: str, content: str | bytes, code: str, message: str
) -> None:
    data = content.encode() if isinstance(content, str) else content
    config = parse_config(data, name=name)
    assert "b.com" in {rule.domain for rule in config.rules}
    assert any(f.code == code and message in f.message for f in config.findings), config.findings


# -- lint and score on a crafted history ----------------------------------------------------


@pytest.fixture(scope="module")
def history(pki: dict[str, CA]) -> list[ObservedChain]:
    """``fresh.test``: fresh key every 90 days under issuer one, moving to issuer two on day
    360; ``steady.test``: one key, issuer one throughout."""
    sightings: list[ChainSighting] = []
    for i, day in enumerate(range(0, 540, 90)):
        at = T0 + timedelta(days=day)
        issuer = pki["one"] if day < 360 else pki["two"]
        fresh = issuer.issue_leaf("fresh.test", key=pooled_key(KeyType.P256, 20 + i))
        steady = pki["one"].issue_leaf("steady.test", key=pooled_key(KeyType.P256, 40))
        sightings.append(("fresh.test", 443, "fresh.test", at, [fresh.record, issuer.record]))
        sightings.append(
            ("steady.test", 443, "steady.test", at, [steady.record, pki["one"].record])
        )
    store = TrustStore.from_certificates([pki["root"].record], name="audit")
    return observed_chains(*frames_from_chains(sightings), trust_stores=store)


def _checks(findings: object, domain: str) -> set[str]:
    rows = findings[findings["host"] == domain]  # type: ignore[index]
    return set(rows["code"])


def test_lint_flags_the_four_hazards(pki: dict[str, CA], history: list[ObservedChain]) -> None:
    first_fresh_leaf = history[0].verified[0]  # type: ignore[index]
    assert first_fresh_leaf.subject.endswith("fresh.test") or history[0].host == "fresh.test"
    one = pki["one"].record.pin
    kotlin = f'''
        .add("fresh.test", "{first_fresh_leaf.pin}", "{PIN_B}")
        .add("steady.test", "{one}")
        .add("absent.test", "{PIN_A}", "{PIN_B}")
    '''
    config = parse_config(f"CertificatePinner{kotlin}".encode(), name="Pins.kt")
    findings = lint(config, history, at=AT)
    assert list(findings.columns) == FINDING_COLUMNS
    # PIN_B is a placeholder (a digest of one repeated byte): bogus, not "a backup, or stale".
    assert _checks(findings, "fresh.test") == {"leaf-pin-no-reuse", "bogus-pin"}
    assert _checks(findings, "steady.test") == {"single-pin"}
    assert _checks(findings, "absent.test") == {"no-history", "bogus-pin"}
    # The issuer rotation: a pin on issuer one for fresh.test, which moved to issuer two.
    rotating = parse_config(f'CertificatePinner .add("fresh.test", "{one}")'.encode(), name="r.kt")
    messages = lint(rotating, history, at=AT).set_index("code")["message"]
    assert "issued by 2 (audit issuer one, audit issuer two)" in messages["rotating-intermediate"]
    # A key known to rotate at random, passed in, is flagged even before it has rotated.
    steady = parse_config(f'CertificatePinner .add("steady.test", "{one}")'.encode(), name="s.kt")
    siblings = {pki["one"].record.spki_sha256, pki["two"].record.spki_sha256}
    flagged = lint(steady, history, at=AT, rotating=siblings)
    assert "rotating-intermediate" in set(flagged["code"])
    # A set that pins every intermediate of the rotation covers it: no warning.
    two = pki["two"].record.pin
    both = f'CertificatePinner .add("steady.test", "{one}", "{two}")'
    covered = lint(parse_config(both.encode(), name="b.kt"), history, at=AT, rotating=siblings)
    assert "rotating-intermediate" not in set(covered["code"])


def test_lint_expired_and_report_only() -> None:
    trustkit = {"TSKPinnedDomains": {"old.test": {
        "TSKPublicKeyHashes": [BARE_A, BARE_B], "TSKExpirationDate": "2025-12-31",
        "TSKEnforcePinning": False,
    }}}  # fmt: skip
    config = parse_config(json.dumps(trustkit).encode(), name="tk.json")
    checks = set(lint(config, [], at=AT)["code"])
    assert {"expired", "report-only", "no-history"} <= checks
    before = datetime(2025, 12, 30, 23, 59, 59, tzinfo=UTC)
    assert "expired" not in set(lint(config, [], at=before)["code"])


def test_score_says_when_the_configuration_would_have_broken(
    pki: dict[str, CA], history: list[ObservedChain]
) -> None:
    one = pki["one"].record.pin
    config = parse_config(
        f'CertificatePinner .add("**.test", "{one}", "{PIN_B}")'.encode(), name="p.kt"
    )
    table = score(config, history).set_index("host")
    assert list(table.reset_index().columns) == SCORE_COLUMNS
    fresh = table.loc["fresh.test"]
    assert fresh["broken_at"] == T0 + timedelta(days=360)
    assert fresh["accepted"] == 4
    assert fresh["rejected"] == 2
    assert fresh["rejects_latest"]
    assert fresh["verdict"] == "would have broken on 2024-12-26"
    assert fresh["rule"] == "**.test"
    steady = table.loc["steady.test"]
    assert pd.isna(steady["broken_at"])
    assert not steady["rejects_latest"]
    assert steady["verdict"].startswith("no break in 450 days observed (6 accepted")
    # An expiry in the middle: the pins stop being enforced, nothing breaks after it.
    xml = f"""<network-security-config><domain-config><domain>fresh.test</domain>
      <pin-set expiration="2024-10-01"><pin digest="SHA-256">{one.removeprefix("sha256/")}</pin>
      </pin-set></domain-config></network-security-config>"""
    expiring = score(parse_config(xml.encode(), name="nsc.xml"), history).iloc[0]
    assert expiring["unenforced"] == 2  # 2024-12-26 and 2025-03-26
    assert expiring["rejected"] == 0
    assert pd.isna(expiring["broken_at"])


# -- the real histories ---------------------------------------------------------------------


def _le(le_hierarchy: list[Certificate], common_name: str) -> Certificate:
    return next(c for c in le_hierarchy if c.subject.startswith(f"CN={common_name},"))


def test_real_lencr_pinned_to_r3_breaks_when_the_e_series_arrives(
    real_chains: list[ObservedChain], le_hierarchy: list[Certificate], shared_data: Path
) -> None:
    r3 = _le(le_hierarchy, "R3")
    # From the PEM files: the first sample served with an intermediate other than R3.
    samples = []
    directory = shared_data / "real-histories"
    for line in (directory / "manifest.csv").read_text().splitlines()[1:]:
        host, observed_at, chain_file = line.split(",")[:3]
        if host == "lencr.org":
            samples.append(
                (datetime.fromisoformat(observed_at), load_certificate_file(directory / chain_file))
            )
    moved = min(
        at for at, chain in samples if len(chain) > 1 and not chain[1].subject.startswith("CN=R3,")
    )
    config = parse_config(
        f'CertificatePinner .add("lencr.org", "{r3.pin}")'.encode(), name="Pins.kt"
    )
    row = score(config, real_chains).iloc[0]
    assert row["host"] == "lencr.org"
    assert row["broken_at"].date() == moved.date()
    assert row["rejects_latest"]
    checks = set(lint(config, real_chains, at=AT)["code"])
    # R3 left service on 2025-09-15 (its certificates' last not_after).
    assert checks == {"single-pin", "rotating-intermediate", "retired-ca-key"}


def test_real_lencr_leaf_pin_on_a_host_that_never_reuses(
    real_chains: list[ObservedChain], shared_data: Path
) -> None:
    leaves = real_leaves(shared_data, "lencr.org")
    assert len({leaf.spki_sha256 for _, leaf in leaves}) == len(leaves)  # never reuses
    first_key = leaves[0][1].pin
    config = parse_config(
        f'CertificatePinner .add("lencr.org", "{first_key}", "{PIN_A}")'.encode(), name="k.kt"
    )
    findings = lint(config, real_chains, at=AT)
    assert "leaf-pin-no-reuse" in set(findings["code"])
    # audit and history count different things, and the message says so (issue 18):
    # history counts every change of leaf (13 for lencr.org), audit only those between
    # chains that validate, so a leaf that does not validate today is one renewal fewer.
    served = {c.presented[0].sha256 for c in real_chains if c.host == "lencr.org"}
    validated = {c.verified[0].sha256 for c in real_chains if c.host == "lencr.org" and c.verified}
    message = findings.loc[findings["code"] == "leaf-pin-no-reuse", "message"].iloc[0]
    assert len(served) - 1 == 13
    assert f"{len(validated) - 1} renewals between validated chains" in message
    assert "pinlab history counts every change of leaf" in message
    assert len(validated) < len(served)


def test_cli_audit(real_db: Path, le_hierarchy: list[Certificate], tmp_path: Path) -> None:
    r3 = _le(le_hierarchy, "R3")
    config = tmp_path / "Pins.kt"
    config.write_text(f'val p = CertificatePinner.Builder().add("lencr.org", "{r3.pin}").build()\n')
    runner = CliRunner()
    options = ["--db", str(real_db), "--ca-file", certifi.where(), "--at", "2026-01-01"]
    result = runner.invoke(app, ["audit", str(config), *options])
    assert result.exit_code == 1, result.output
    assert "warning: lencr.org: [single-pin]" in result.output
    assert "history: lencr.org governed by lencr.org: 5 accepted, 8 rejected" in result.output
    assert "would have broken on 2024-09-16" in result.output
    broken = tmp_path / "broken.xml"
    broken.write_text("<network-security-config><domain-config>")
    result = runner.invoke(app, ["audit", str(broken), *options])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("pinlab: error:")]
    assert len(errors) == 1
    assert "broken.xml: not well-formed XML" in errors[0]
    missing = runner.invoke(app, ["audit", str(tmp_path / "nope.kt"), *options])
    assert missing.exit_code == 2


def test_bare_base64_pins_with_a_slash_early_and_written_out_pins() -> None:
    digest = b"\x7f\x35\xbf" + bytes(29)
    bare = Pin("sha256", digest)
    text = str(bare).removeprefix("sha256/")
    assert text.startswith("fzW/")
    trustkit = {"TSKPinnedDomains": {"a.test": {"TSKPublicKeyHashes": [text, BARE_B]}}}
    (rule,) = parse_config(json.dumps(trustkit).encode(), name="tk.json").rules
    assert rule.pins == (bare, Pin.parse(PIN_B))
    # TrustKit takes bare base64 only: a written-out pin makes it refuse the configuration.
    trustkit = {"TSKPinnedDomains": {"a.test": {"TSKPublicKeyHashes": [text, PIN_B]}}}
    config = parse_config(json.dumps(trustkit).encode(), name="tk.json")
    assert config.rules[0].pins == (bare,)
    assert {f.code for f in config.findings} == {"app-crash"}


def test_cli_audit_json_shape(
    real_db: Path, le_hierarchy: list[Certificate], tmp_path: Path
) -> None:
    r3 = _le(le_hierarchy, "R3")
    config = tmp_path / "Pins.kt"
    config.write_text(f'val p = CertificatePinner.Builder().add("lencr.org", "{r3.pin}").build()\n')
    options = ["--db", str(real_db), "--ca-file", certifi.where(), "--at", "2026-01-01", "--json"]
    result = CliRunner().invoke(app, ["audit", str(config), *options])
    assert result.exit_code == 1, result.output
    document = json.loads(result.output)
    assert set(document) == {"format", "rules", "hosts", "findings"}
    assert document["format"] == "okhttp"
    (host,) = document["hosts"]
    assert {"host", "rule", "pins", "enforced", "accepted", "rejected", "first_rejected_at",
            "broken_at"} <= set(host)  # fmt: skip
    assert host["rule"] == "lencr.org"
    assert host["pins"] == [r3.pin]
    assert host["enforced"] is True
    assert host["broken_at"].startswith("2024-09-16")
    assert {f["code"] for f in document["findings"]} >= {"single-pin", "retired-ca-key"}
    assert all(set(f) == {"severity", "code", "host", "message"} for f in document["findings"])


def test_okhttp_calls_with_run_time_values_are_reported_not_skipped() -> None:
    """A pinner .add whose host and pins are only known at run time is named as
    unresolved (the developer meant to pin there); another .add(a, b) is not a pinner."""
    code = b"""
import okhttp3.CertificatePinner
class Pins(private val config: Config) {
    val items = mutableListOf<String>()
    fun pinner(): CertificatePinner {
        items.add(config.name, config.other)
        val builder = CertificatePinner.Builder()
        builder.add(config.host, config.pin)
        return CertificatePinner.Builder()
            .add("api.example.com", "%s")
            .add(config.host2, config.pin2)
            .build()
    }
}
""" % PIN_A.encode()
    config = parse_config(code, name="Pins.kt")
    unresolved = [f.message for f in config.findings if f.code == "unresolved-call"]
    assert unresolved == [
        "Pins.kt:8: cannot resolve .add(config.host, config.pin)",
        "Pins.kt:11: cannot resolve .add(config.host2, config.pin2)",
    ]
    assert [rule.pattern for rule in config.rules] == ["api.example.com"]
