"""PEM blocks (RFC 7468) found in one forward pass: linear time whatever the input holds.

A lazy regular expression (``BEGIN (label)...(.*?)...END \\1``) tries every ``BEGIN`` against
the whole rest of the input when no ``END`` follows: a 1 MB file of ``BEGIN`` lines hung
``pins`` and ``import-pem``. Here each byte is looked at a bounded number of times: blocks do
not nest, so the ``END`` line that closes a ``BEGIN`` is the first one after it, and a block
whose ``END`` is missing, or comes after the next ``BEGIN``, or names another label, is cut
short: scanning stops there and says which block it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["PemBlock", "iter_pem"]

_BEGIN = b"-----BEGIN "
_END = b"-----END "
_DASHES = b"-----"
_MAX_LABEL = 64  # RFC 7468 labels are short ("X509 CERTIFICATE", "ENCRYPTED PRIVATE KEY")
_LABEL = re.compile(rb"[A-Z0-9 ]{1,%d}" % _MAX_LABEL)


@dataclass(frozen=True, slots=True)
class PemBlock:
    """One block: its number (1-based), label and text from ``-----BEGIN`` to the ``END`` line.

    A block cut short (``complete`` false) is the last one :func:`iter_pem` yields.
    """

    number: int
    label: bytes
    text: bytes
    body: bytes
    """The lines between the header and the ``END`` line (base64, maybe with headers)."""
    complete: bool = True


def _body_start(data: bytes, after_header: int) -> int:
    """Where the body begins: after the header's line break (``\\n`` or ``\\r\\n``), or -1."""
    if data.startswith(b"\n", after_header):
        return after_header + 1
    if data.startswith(b"\r\n", after_header):
        return after_header + 2
    return -1


def iter_pem(data: bytes) -> Iterator[PemBlock]:
    """The PEM blocks of ``data`` in order, lazily; the first one cut short ends the scan."""
    position, number = 0, 0
    while (start := data.find(_BEGIN, position)) >= 0:
        number += 1
        label_start = start + len(_BEGIN)
        label_end = data.find(_DASHES, label_start, label_start + _MAX_LABEL + len(_DASHES))
        label = data[label_start:label_end] if label_end >= 0 else b""
        body_start = _body_start(data, label_end + len(_DASHES)) if label_end >= 0 else -1
        end = data.find(_END, body_start) if body_start >= 0 and _LABEL.fullmatch(label) else -1
        closing = _END + label + _DASHES
        # Bounded by the END line: no byte is searched twice for a BEGIN.
        if end < 0 or data.find(_BEGIN, body_start, end) >= 0 or not data.startswith(closing, end):
            yield PemBlock(number, label, data[start:label_start], b"", complete=False)
            return
        stop = end + len(closing)
        yield PemBlock(number, label, data[start:stop], data[body_start:end])
        position = stop
