"""Which certificates a backfill keeps: a watch list of DNS names, matched while streaming.

Entries of the list (one per line, ``#`` comments allowed):

- ``example.com``: certificates valid for that exact name (including a ``*.com``-style
  wildcard that covers it, as a TLS client would accept it);
- ``*.example.com``: the names that wildcard covers (``www.example.com``), and the
  wildcard itself;
- ``.example.com``: the domain and every name under it (certspotter's syntax). With
  ``subdomains=True`` every plain entry means this.

A certificate is recorded once under each of its names the list matches (the ``host`` of
the observation), and under an exact entry that one of its wildcards covers: a host's
history is then complete whichever way its certificates name it.

Matching is set lookups over a name and its parent domains, so a watch list of any length
costs the same per certificate; the backfill reads the names straight from the DER
(:func:`pinlab.ct.rows.dns_names`) and parses only the certificates that match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from pinlab.ct.errors import CTError

__all__ = ["DomainFilter", "normalise_name"]


def normalise_name(name: str) -> str:
    """Lower case, no trailing dot, IDNA (punycode) for non-ASCII labels."""
    name = name.strip().rstrip(".").lower()
    if not name.isascii():
        prefix = "*." if name.startswith("*.") else "." if name.startswith(".") else ""
        try:
            name = prefix + name[len(prefix) :].encode("idna").decode("ascii")
        except UnicodeError:
            raise CTError(f"{name!r} is not a valid domain name") from None
    return name


def _parent(name: str) -> str:
    return name.partition(".")[2]


class DomainFilter:
    """A compiled watch list (see the module docstring)."""

    def __init__(self, names: Iterable[str], *, subdomains: bool = False) -> None:
        self.exact: set[str] = set()
        self.wildcards: set[str] = set()  # parent domains of "*.parent" entries
        self.subtrees: set[str] = set()
        self.subdomains = subdomains
        for raw in names:
            name = normalise_name(raw)
            if not name:
                continue
            if name.startswith("*."):
                self.wildcards.add(name[2:])
            elif name.startswith(".") or subdomains:
                self.subtrees.add(name.lstrip("."))
            else:
                self.exact.add(name)
        if not (self.exact or self.wildcards or self.subtrees):
            raise CTError("the domain list is empty")
        if any(not n or " " in n for n in self.exact | self.wildcards | self.subtrees):
            raise CTError("the domain list holds an empty or blank-containing name")
        self._by_parent: dict[str, list[str]] = {}
        for name in self.exact:
            self._by_parent.setdefault(_parent(name), []).append(name)

    @classmethod
    def from_file(cls, path: str | Path, *, subdomains: bool = False) -> DomainFilter:
        """Read a watch list file (one name per line, ``#`` comments)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CTError(f"{path}: cannot read the domain list: {error}") from None
        names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        try:
            return cls([n for n in names if n], subdomains=subdomains)
        except CTError as error:
            raise CTError(f"{path}: {error}") from None

    @property
    def entries(self) -> list[str]:
        """The normalised entries, in the syntax of the module docstring."""
        return sorted(
            self.exact | {"*." + n for n in self.wildcards} | {"." + n for n in self.subtrees}
        )

    @property
    def key(self) -> str:
        """A digest of the entries: backfill positions are kept per (log, filter)."""
        return hashlib.sha256("\n".join(self.entries).encode()).hexdigest()[:16]

    def match(self, names: Sequence[str]) -> list[str]:
        """The hosts a certificate with these names is recorded under, each once.

        A name the list matches is its own host; an exact entry matched through a wildcard
        name (``*.example.com`` covering ``www.example.com``) records under the entry.
        """
        found: dict[str, None] = {}
        for raw in names:
            name = raw.rstrip(".").lower()
            wildcard = name.startswith("*.")
            base = name[2:] if wildcard else name
            if name in self.exact or (not wildcard and _parent(name) in self.wildcards):
                found[name] = None
            if wildcard:
                for covered in self._by_parent.get(base, ()):
                    found[covered] = None
                if base in self.wildcards:
                    found[name] = None
            suffix = base
            while suffix:
                if suffix in self.subtrees:
                    found[name] = None
                    break
                suffix = _parent(suffix)
        return list(found)
