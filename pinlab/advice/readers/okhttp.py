"""OkHttp ``CertificatePinner`` pins as written in Kotlin or Java source.

Every ``.add(pattern, pin, ...)`` call is read; its arguments may be literals, constants
of the file, string templates, concatenations, spread arrays (``*PINS``) or the variable of
a simple loop over an array of the file (``for (pin in PINS)``, ``PINS.forEach { ... }``).
Calls pinlab cannot resolve are reported (``unresolved-call``), not guessed. OkHttp itself
throws at build time on a pin without ``sha256/``/``sha1/`` or with bad base64
(``app-crash``); a digest of the wrong length is accepted by OkHttp and never matches.
"""

from __future__ import annotations

import re

from pinlab.advice.model import ConfigError, Finding, PinConfig, PinRule, read_pin
from pinlab.advice.readers.source import Constants, balanced, split_top, strip_comments
from pinlab.errors import MalformedPinError
from pinlab.pins import Pin

__all__ = ["looks_like_okhttp", "read_okhttp"]

_ADD = re.compile(r"\.add\s*\(")
_HOSTLIKE = re.compile(r"(?:\*\*?\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def looks_like_okhttp(code: str) -> bool:
    """Comment-free source that builds a CertificatePinner with ``.add(`` calls."""
    return "CertificatePinner" in code and bool(_ADD.search(code))


def read_okhttp(text: str, name: str) -> PinConfig:
    """Read every pinner ``.add`` call of ``text``; findings for what cannot be used."""
    code = strip_comments(text)
    constants = Constants.of(code)
    by_pattern: dict[str, tuple[list[Pin], str]] = {}
    findings: list[Finding] = []
    for match in _ADD.finditer(code):
        open_at = match.end() - 1
        args = split_top(code[open_at + 1 : balanced(code, open_at) - 1])
        if len(args) < 2:
            continue
        line = code.count("\n", 0, match.start()) + 1
        where = f"{name}:{line}"
        hosts = constants.evaluate(args[0])
        values = [_argument(arg, constants, code, match.start()) for arg in args[1:]]
        pinlike = any(
            v is not None and any(s.startswith(("sha256/", "sha1/")) for s in v) for v in values
        )
        host_ok = hosts is not None and len(hosts) == 1 and _HOSTLIKE.fullmatch(hosts[0])
        if not pinlike and not (host_ok and None in values) and not _on_pinner(code, match.start()):
            continue  # another .add(...), not a pinner call
        if hosts is None or len(hosts) != 1 or None in values:
            call = " ".join(code[match.start() : balanced(code, open_at)].split())[:120]
            findings.append(
                Finding(
                    "warning",
                    "unresolved-call",
                    hosts[0] if host_ok and hosts else "?",
                    f"{where}: cannot resolve {call}",
                )
            )
            continue
        pattern = hosts[0].lower()
        pins, _ = by_pattern.setdefault(pattern, ([], where))
        for text_pin in (s for v in values if v for s in v):
            pin = _pin(text_pin, pattern, where, findings)
            if pin is not None:
                pins.append(pin)
    if not by_pattern and not findings:
        raise ConfigError(f'{name}: no CertificatePinner .add("host", "sha256/...") call found')
    rules = tuple(
        PinRule(pattern, pattern.startswith("**."), tuple(dict.fromkeys(pins)), where=where)
        for pattern, (pins, where) in by_pattern.items()
    )
    return PinConfig("okhttp", name, rules, tuple(findings))


def _on_pinner(code: str, at: int) -> bool:
    """Whether the ``.add(`` at ``at`` is called on a CertificatePinner builder: in a chain
    that starts at ``CertificatePinner.Builder()``, or on a variable assigned one. Such a
    call is reported even when neither its host nor its pins can be resolved (values known
    only at run time), where another ``.add(a, b)`` of the file is left alone."""
    statement = code[
        max(code.rfind(";", 0, at), code.rfind("{", 0, at), code.rfind("}", 0, at)) + 1 : at
    ]
    if "CertificatePinner" in statement:
        return True
    receiver = re.search(r"(\w+)\s*$", statement)
    if receiver is None:
        return False
    name = re.escape(receiver.group(1))
    assigned = rf"\b{name}\s*(?::\s*[\w.]+\s*)?=\s*(?:new\s+)?CertificatePinner\.Builder"
    return re.search(assigned, code) is not None


def _argument(arg: str, constants: Constants, code: str, at: int) -> list[str] | None:
    value = constants.evaluate(arg)
    if value is not None or not re.fullmatch(r"\w+", arg.strip()):
        return value
    array = _loop_source(arg.strip(), code[max(0, at - 600) : at])
    return None if array is None else constants.evaluate(array)


def _loop_source(variable: str, before: str) -> str | None:
    """The array a loop variable runs over, from the nearest loop header before the call."""
    patterns = [
        rf"for\s*\(\s*(?:val\s+|var\s+|final\s+)?(?:[\w<>\[\]]+\s+)?{variable}\s*(?::\s*\w+\s*)?"
        r"(?:\bin\b|:)\s*([\w.]+)\s*\)",
        rf"([\w.]+)\s*\.forEach\s*[({{]\s*{variable}\s*->",
    ]
    if variable == "it":
        patterns.append(r"([\w.]+)\s*\.forEach\s*\{(?!\s*\w+\s*->)")
    found = [(m.start(), m.group(1)) for p in patterns for m in re.finditer(p, before)]
    return max(found)[1] if found else None


def _pin(text: str, pattern: str, where: str, findings: list[Finding]) -> Pin | None:
    if not text.startswith(("sha256/", "sha1/")):
        findings.append(
            Finding(
                "error",
                "app-crash",
                pattern,
                f"{where}: {text!r}: OkHttp "
                "throws at build time, pins must start with sha256/ or sha1/",
            )
        )
        return None
    try:
        return read_pin(text, bare=False)
    except MalformedPinError as error:
        wrong_length = "bytes" in str(error)
        findings.append(
            Finding(
                "warning" if wrong_length else "error",
                "bogus-pin" if wrong_length else "app-crash",
                pattern,
                f"{where}: {error}"
                + ("; it never matches" if wrong_length else "; OkHttp throws at build time"),
            )
        )
        return None
