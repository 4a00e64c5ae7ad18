"""The one door to the terminal: text from certificates, servers and files is shown, never obeyed.

A certificate's subject, a server's error text, a line of a target file: all are data an
adversary may write. Printed as rich markup, ``[/x]`` crashes the command and
``[bold green]pin matched[/]`` forges a verdict; printed raw, ``ESC [2J`` clears the screen and
``CR`` overwrites pinlab's own line. So the consoles here never read markup, emoji codes or
highlighting (rich's highlighter is also quadratic: a 65,000-character name took 28 s), and
:func:`shown` makes every control character, and the invisible characters that reorder or
hide text (bidi overrides, zero-width marks), visible as ``\\x1b`` or ``\\u202e``.

Commands compose a line from their own words and :func:`shown` values, then :func:`say` it.
"""

from __future__ import annotations

import unicodedata

from rich.console import Console

__all__ = ["console", "err_console", "say", "shown"]

# soft_wrap: lines are data (pins, paths) that must survive a pipe unbroken.
console = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)

# Format characters (Cf) that reorder or hide text: bidi embeddings, overrides and
# isolates, zero-width marks and joiners, plus the line and paragraph separators.
_INVISIBLE = [
    *(0x061C, 0x180E, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0xFEFF),
    *range(0x202A, 0x202F),
    *range(0x2060, 0x2070),
]


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


# str.translate: one pass, linear in the text, whatever it holds.
_ONE_LINE = {
    code: _escape(code)
    for code in [*range(0x20), *range(0x7F, 0xA0), *_INVISIBLE]
    if code <= 0xFF or unicodedata.category(chr(code)) in {"Cf", "Zl", "Zp", "Cn"}
}
_MULTI_LINE = {code: text for code, text in _ONE_LINE.items() if code != ord("\n")}


def shown(value: object) -> str:
    """``value`` as text safe for a terminal: every control and invisible character escaped.

    For untrusted text (certificate fields, server messages, file lines, host names):
    a newline is escaped too, so that one field can never start a line of its own.
    """
    return str(value).translate(_ONE_LINE)


def say(text: object, *, err: bool = False) -> None:
    """Print ``text`` as plain text (no markup) on stdout, or stderr with ``err``.

    Lines are kept; any other control character is escaped, so even a value a caller forgot
    to pass through :func:`shown` cannot drive the terminal.
    """
    (err_console if err else console).print(str(text).translate(_MULTI_LINE))
