"""Parse ``host``, ``host:port`` and ``[v6addr]:port`` as typed on a command line."""

from __future__ import annotations

import ipaddress
import re

from pinlab.errors import TargetError

__all__ = ["normalise_hostname", "parse_endpoint", "parse_port"]

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def normalise_hostname(name: str) -> str:
    """Lower-case, IDNA-encode and check a DNS name (IP addresses pass unchanged)."""
    text = name.strip().rstrip(".")
    if not text:
        raise TargetError("empty host name")
    if any(ch.isspace() for ch in text):
        raise TargetError(f"host name {name!r} contains whitespace")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        ascii_name = text.encode("idna").decode("ascii").lower()
    except UnicodeError as error:
        raise TargetError(f"host name {name!r} is not a valid IDNA name: {error}") from None
    if len(ascii_name) > 253 or not all(_LABEL.fullmatch(label) for label in ascii_name.split(".")):
        raise TargetError(f"host name {name!r} is not a valid DNS name")
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
