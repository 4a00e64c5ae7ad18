"""Target lists, streamed line by line: what the collector connects to.

Accepted lines (one target each; ``#`` comments and blank lines are skipped)::

    example.com                 host, default port, SNI = host
    example.com:8443            host and port
    [2001:db8::1]:443           IPv6 literal and port (no SNI: an address names no host)
    192.0.2.7,example.com[,443] connect to that IP, send that SNI (as zgrab2 takes it)
    1,google.com                Tranco-style ``rank,domain`` CSV

Names are IDNA-encoded and lower-cased, so ``BÜCHER.example`` and ``xn--bcher-kva.example``
are one target; duplicates are dropped. The file is never loaded whole: memory grows only
with the set of 64-bit fingerprints kept to drop duplicates (about 60 MB per million
distinct targets). A bad line yields a :class:`TargetError` naming its line number through
``on_error`` and parsing goes on; ``strict=True`` raises it instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pinlab.collect.endpoint import normalise_hostname, parse_endpoint, parse_port
from pinlab.errors import TargetError

__all__ = ["Target", "count_target_lines", "iter_targets", "parse_target_line"]


@dataclass(frozen=True, slots=True)
class Target:
    """One place to connect to: ``host:port``, the SNI to send, and an IP if the list fixed one."""

    host: str
    """DNS name (IDNA, lower-case) or IP literal; the name the chain is validated for."""
    port: int
    sni: str | None
    """Server name sent in the ClientHello, ``None`` for none (IP literals, ``--no-sni``)."""
    ip: str | None = None
    """Address to connect to instead of resolving :attr:`host` (``ip,sni`` lines)."""

    @property
    def key(self) -> tuple[str, int, str | None, str | None]:
        """Identity of the target within a scan (what ``--resume`` skips)."""
        return (self.host, self.port, self.sni, self.ip)

    @property
    def validation_name(self) -> str:
        """The name a client would check the leaf against."""
        return self.sni or self.host

    def __str__(self) -> str:
        address = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{address}:{self.port}"
        if self.ip is not None:
            text += f" via {self.ip}"
        if self.sni is not None and self.sni != self.host:
            text += f" (SNI {self.sni})"
        return text


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_target_line(line: str, *, default_port: int = 443, sni: bool = True) -> Target | None:
    """Parse one line; ``None`` for blank lines and comments, :class:`TargetError` if bad."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    if "," in text:
        fields = [field.strip() for field in text.split(",")]
        if len(fields) == 2 and fields[0].isdigit():  # Tranco: rank,domain
            host, port = parse_endpoint(fields[1], default_port=default_port)
            return _target(host, port, None, sni)
        if len(fields) in (2, 3) and _is_ip(fields[0].strip("[]")):
            ip = str(ipaddress.ip_address(fields[0].strip("[]")))
            name = normalise_hostname(fields[1])
            port = parse_port(fields[2], default=default_port) if len(fields) == 3 else default_port
            return Target(name, port, name if sni else None, ip)
        raise TargetError(f"{text!r}: expected 'rank,domain' or 'ip,sni[,port]'")
    host, port = parse_endpoint(text, default_port=default_port)
    return _target(host, port, None, sni)


def _target(host: str, port: int, ip: str | None, sni: bool) -> Target:
    send_sni = sni and not _is_ip(host)
    return Target(host, port, host if send_sni else None, ip)


def iter_targets(
    path: str | Path,
    *,
    default_port: int = 443,
    sni: bool = True,
    strict: bool = False,
    on_error: Callable[[TargetError], None] | None = None,
) -> Iterator[Target]:
    """Stream the distinct targets of a file, in file order.

    A bad line becomes a :class:`TargetError` ("targets.txt line 12: ...") passed to
    ``on_error`` (or raised when ``strict``). An unreadable file raises :class:`TargetError`.
    """
    path = Path(path)
    seen: set[int] = set()
    try:
        handle = path.open("rb")
    except OSError as error:
        raise TargetError(f"{path}: cannot read target file: {error.strerror}") from None
    with handle:
        try:
            for number, raw in enumerate(handle, start=1):
                try:
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as error:
                        raise TargetError(f"not UTF-8 text ({error.reason})") from None
                    target = parse_target_line(line, default_port=default_port, sni=sni)
                except TargetError as error:
                    located = TargetError(f"{path} line {number}: {error}")
                    if strict:
                        raise located from None
                    if on_error is not None:
                        on_error(located)
                    continue
                if target is None:
                    continue
                # A 64-bit fingerprint, not the target, keeps memory small; a collision
                # (odds ~1e-8 at a million targets) would drop one target.
                fingerprint = hash(target.key)
                if fingerprint in seen:
                    continue
                seen.add(fingerprint)
                yield target
        except OSError as error:
            raise TargetError(f"{path}: cannot read target file: {error.strerror}") from None


def count_target_lines(path: str | Path) -> int:
    """Lines that may hold a target (not blank, not a comment): a cheap progress total."""
    count = 0
    try:
        with Path(path).open("rb") as handle:
            for line in handle:
                stripped = line.strip()
                if stripped and not stripped.startswith(b"#"):
                    count += 1
    except OSError as error:
        raise TargetError(f"{path}: cannot read target file: {error.strerror}") from None
    return count
