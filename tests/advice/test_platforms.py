"""Each platform's host matching, its refusals, and the readers of real-world forms.

Rules cited: OkHttp ``CertificatePinner`` (union of the pins of every matching pattern,
``*.`` one label, ``**.`` any depth); Android ``ApplicationConfig.getConfigForHostname``
(exact domain, else the longest includeSubdomains domain); TrustKit
``getPinningConfigurationKeyForDomain`` (own entry, else an includeSubdomains parent;
``TSKExcludeSubdomainFromParentPolicy``); Apple's ``NSIncludesSubdomains`` ("subdomains of
the domain that have one additional path component").
"""

from __future__ import annotations

import base64
import hashlib
import json

from pinlab.advice.findings import RETIRED_CA_KEYS, bogus_reason
from pinlab.advice.pinconfig import parse_config
from pinlab.advice.platforms import govern
from pinlab.certs import Certificate
from pinlab.pins import Pin

K1 = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M="
K2 = "diGVwiVYbubAI3RW4hB9xU8e/CH2GnkuvVFZE8zmgzI="
K3 = "K7rZOrXHknnsEhUH8nLL4MZkejquUuIvOIr6tCa0rbo="


def test_okhttp_unions_the_pins_of_every_matching_pattern() -> None:
    kotlin = f"""val p = CertificatePinner.Builder()
        .add("**.example.com", "sha256/{K1}")
        .add("api.example.com", "sha256/{K2}")
        .add("*.example.com", "sha256/{K3}").build()"""
    config = parse_config(kotlin.encode(), name="P.kt")
    api = govern(config, "api.example.com")
    assert set(api.effective.pins) == {Pin.parse("sha256/" + k) for k in (K1, K2, K3)}  # type: ignore[union-attr]
    # "*." is exactly one label, "**." any depth including none.
    assert govern(config, "example.com").rule == "**.example.com"
    assert govern(config, "a.b.example.com").rule == "**.example.com"
    # No single-pin warning: api.example.com is governed by three pins, not one.
    assert not any(f.code == "single-pin" for f in config.findings)


def test_android_uses_only_the_most_specific_domain_config() -> None:
    xml = f"""<network-security-config>
      <domain-config><domain includeSubdomains="true">example.com</domain>
        <pin-set><pin digest="SHA-256">{K1}</pin><pin digest="SHA-256">{K2}</pin></pin-set>
        <domain-config><domain includeSubdomains="true">cdn.example.com</domain>
          <pin-set><pin digest="SHA-256">{K3.rstrip("=")}</pin></pin-set></domain-config>
      </domain-config>
      <domain-config><domain>open.example.com</domain></domain-config>
    </network-security-config>"""
    config = parse_config(b"  \n" + xml.encode(), name="nsc.xml")
    img = govern(config, "img.cdn.example.com")
    assert img.rules[0].domain == "cdn.example.com"
    assert img.effective.pins == (Pin.parse("sha256/" + K3),)  # type: ignore[union-attr]  # unpadded read
    # An exact domain wins even without pins: the parent's pins do not apply.
    assert not govern(config, "open.example.com").enforced
    assert govern(config, "www.example.com").rules[0].domain == "example.com"


def test_android_override_pins_bypasses_the_pins() -> None:
    xml = f"""<network-security-config>
      <!-- CertificatePinner .add("not", "okhttp") in a comment decides nothing -->
      <base-config><trust-anchors><certificates src="system" overridePins="true"/>
      </trust-anchors></base-config>
      <domain-config><domain>example.com</domain>
        <pin-set><pin digest="SHA-256">{K1}</pin><pin digest="SHA-256">{K2}</pin></pin-set>
      </domain-config></network-security-config>"""
    config = parse_config(xml.encode(), name="nsc.xml")
    assert config.format == "android-nsc"
    governance = govern(config, "example.com")
    assert not governance.enforced
    assert governance.accepts((), at=__import__("datetime").datetime.now()) is None


def test_trustkit_most_specific_exclusion_and_start_up_refusals() -> None:
    document = {
        "TSKPinnedDomains": {
            "example.com": {"TSKIncludeSubdomains": True, "TSKPublicKeyHashes": [K1, K2]},
            "open.example.com": {"TSKExcludeSubdomainFromParentPolicy": True},
            "one.example.org": {"TSKPublicKeyHashes": [K1]},
            "prefixed.example.net": {"TSKPublicKeyHashes": ["sha256/" + K1, K2]},
        },
        "TSKIncludeSubdomains": True,
    }
    config = parse_config(json.dumps(document).encode(), name="tk.json")
    assert govern(config, "a.b.example.com").rules[0].domain == "example.com"
    assert not govern(config, "open.example.com").enforced
    codes = {(f.code, f.host) for f in config.findings}
    assert ("app-crash", "one.example.org") in codes  # fewer than two pins
    assert ("app-crash", "prefixed.example.net") in codes  # sha256/ prefix
    assert ("ignored-key", "*") in codes  # a domain key at the top level


def test_ns_pinned_domains_covers_one_more_label_only() -> None:
    import plistlib

    plist = plistlib.dumps(
        {
            "NSAppTransportSecurity": {
                "NSPinnedDomains": {
                    "example.com": {
                        "NSIncludesSubdomains": True,
                        "NSPinnedCAIdentities": [
                            {"SPKI-SHA256-BASE64": K1},
                            {"SPKI-SHA256-BASE64": K2},
                        ],
                    }
                }
            }
        }
    )
    config = parse_config(b"\n  " + plist, name="Info.plist")
    assert govern(config, "math.example.com").rules
    assert not govern(config, "advanced.math.example.com").rules
    assert govern(config, "example.com").rules


def test_trustkit_swift_and_objective_c_literals() -> None:
    swift = f'''import TrustKit
    // kTSKPinnedDomains in a comment
    let backupKey = "{K2}"
    let config: [String: Any] = [
        kTSKSwizzleNetworkDelegates: false,
        kTSKPinnedDomains: ["api.example.com": [
            kTSKEnforcePinning: true, kTSKIncludeSubdomains: true,
            kTSKPublicKeyHashes: ["{K1}", backupKey],
        ]]]
    TrustKit.initSharedInstance(withConfiguration: config)'''
    objc = f'''static NSString *const kBackup = @"{K2}";
    NSDictionary *config = @{{ kTSKSwizzleNetworkDelegates: @NO,
        kTSKPinnedDomains: @{{ @"api.example.com": @{{
            kTSKIncludeSubdomains: @YES,
            kTSKPublicKeyHashes: @[ @"{K1}", kBackup ] }} }} }};'''
    for name, text in (("AppDelegate.swift", swift), ("AppDelegate.m", objc)):
        config = parse_config(text.encode(), name=name)
        assert config.format == "trustkit", name
        (rule,) = config.rules
        assert rule.include_subdomains, name
        assert len(rule.pins) == 2, name
        assert not config.findings, config.findings


def test_okhttp_constants_templates_loops_and_unresolved_calls() -> None:
    java = f"""class Pins {{
      private static final String HOST = "api.example.com";
      private static final String[] PINS = {{"sha256/{K1}", "sha256/{K2}"}};
      CertificatePinner pinner() {{
        CertificatePinner.Builder b = new CertificatePinner.Builder();
        for (String pin : PINS) {{ b.add(HOST, pin); }}
        b.add("cdn.example.com", "sha256/" + KEY);
        return b.build();
      }}
    }}"""
    config = parse_config(java.encode(), name="Pins.java")
    (rule,) = config.rules
    assert rule.domain == "api.example.com"
    assert len(rule.pins) == 2
    assert [f.code for f in config.findings] == ["unresolved-call"]
    kotlin = f'''const val KEY = "{K3}"
    val pinner = CertificatePinner.Builder()
        .add("x.example.com", "sha256/${{KEY}}", "sha256/$KEY")'''
    (rule,) = parse_config(kotlin.encode(), name="P.kt").rules
    assert rule.pins == (Pin.parse("sha256/" + K3),)


def test_bogus_pins_and_retired_ca_keys(le_hierarchy: list[Certificate]) -> None:
    empty = Pin("sha256", hashlib.sha256(b"").digest())
    assert str(empty) == "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert bogus_reason(empty)
    hex_text = Pin("sha256", hashlib.sha256(b"k").hexdigest()[:32].encode())
    assert "hex" in (bogus_reason(hex_text) or "")
    assert bogus_reason(Pin.parse("sha256/" + "X" * 43 + "="))
    assert bogus_reason(Pin.parse("sha256/" + "A" * 43 + "="))
    assert bogus_reason(Pin.parse("sha256/" + K1)) is None
    # The catalog's Let's Encrypt keys and dates, recomputed from the hierarchy's certificates.
    last: dict[Pin, str] = {}
    for certificate in le_hierarchy:
        pin = Pin.of(certificate)
        day = certificate.not_after.date().isoformat()
        last[pin] = max(last.get(pin, day), day)
    checked = [key for key in RETIRED_CA_KEYS if key.pin in last]
    assert len(checked) == len(RETIRED_CA_KEYS) - 1  # AddTrust is not a Let's Encrypt key
    for key in checked:
        assert last[key.pin] == key.left_service.date().isoformat(), key.name
    assert base64.b64decode(K1)  # ISRG Root X1 still issues: not in the catalog
    assert Pin.parse("sha256/" + K1) not in {key.pin for key in RETIRED_CA_KEYS}
