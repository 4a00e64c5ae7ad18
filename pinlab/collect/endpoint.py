"""Parse ``host``, ``host:port`` and ``[v6addr]:port`` as typed on a command line.

Names are mapped as browsers map them: IDNA 2008 with UTS 46 (``faß.test`` is
``xn--fa-hia.test``, where IDNA 2003 made it ``fass.test``). A name whose last label is a
number (``2130706433``, ``0x7f.1``, ``127.0.0.01``) is refused: resolvers and URL parsers
read it as an IPv4 address in shorthand, so it would reach an address nobody wrote. Only
dotted quads and IPv6 literals are addresses.
"""

from __future__ import annotations

import ipaddress
import re

import idna

from pinlab.errors import TargetError

__all__ = ["normalise_hostname", "parse_endpoint", "parse_port"]

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NUMERIC = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
MAX_NAME = 253


def _ends_in_a_number(name: str) -> bool:
    """WHATWG URL's test: the last label (before a trailing dot) is decimal or 0x-hex."""
    labels = name.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    return bool(_NUMERIC.fullmatch(labels[-1]))


def normalise_hostname(name: str) -> str:
    """Lower-case, IDNA-encode and check a DNS name (IP addresses pass unchanged)."""
    text = name.strip().rstrip(".")
    if not text:
        raise TargetError("empty host name")
    if any(ch.isspace() for ch in text):
        raise TargetError(f"host name {name!r} contains whitespace")
    if len(text) > 4 * MAX_NAME:  # no mapping shortens a name that much: refuse it unread
        raise TargetError(f"host name of {len(text)} characters: a DNS name has at most 253")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        # ASCII names keep underscores (_acme-challenge), which IDNA 2008 disallows.
        ascii_name = text.lower() if text.isascii() else idna.encode(text, uts46=True).decode()
        for label in ascii_name.split("."):
            if label.startswith("xn--"):  # an A-label must decode to a valid U-label
                idna.decode(label)
    except (idna.IDNAError, UnicodeError) as error:
        raise TargetError(f"host name {name!r} is not a valid IDNA name: {error}") from None
    try:
        return str(ipaddress.ip_address(ascii_name))  # full-width digits map to an address
    except ValueError:
        pass
    if _ends_in_a_number(ascii_name):
        raise TargetError(
            f"host name {name!r} ends in a number, which resolvers read as an IPv4 address in "
            "shorthand: write the address as a dotted quad (127.0.0.1) or give a DNS name"
        )
    if len(ascii_name) > MAX_NAME:
        raise TargetError(
            f"host name of {len(ascii_name)} characters: a DNS name has at most {MAX_NAME}"
        )
    if not all(_LABEL.fullmatch(label) for label in ascii_name.split(".")):
        raise TargetError(
            f"host name {name!r} is not a valid DNS name (labels of 1 to 63 letters, digits, "
            "hyphens or underscores)"
        )
    return ascii_name


def parse_endpoint(text: str, *, default_port: int = 443) -> tuple[str, int]:
    """``example.com`` -> (``example.com``, 443); ``[::1]:8443`` -> (``::1``, 8443)."""
    value = text.strip()
    if value.startswith("["):
        address, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise TargetError(f"{text!r}: expected [IPv6-address]:port")
        host, port_text = address, rest[1:] if rest else ""
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetError(f"{text!r}: {host!r} is not an IPv6 address") from None
    elif value.count(":") > 1:
        host, port_text = value, ""  # a bare IPv6 address
    else:
        host, _, port_text = value.partition(":")
    try:
        port = parse_port(port_text, default=default_port)
    except TargetError as error:
        raise TargetError(f"{text!r}: {error}") from None
    return normalise_hostname(host), port


def parse_port(text: str, *, default: int = 443) -> int:
    """A TCP port number; ``default`` when ``text`` is empty."""
    text = text.strip()
    if not text:
        return default
    if not text.isdigit():
        raise TargetError(f"port {text!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise TargetError(f"port {port} is out of range 1-65535")
    return port
