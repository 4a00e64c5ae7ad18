"""Just enough of Kotlin, Java, Swift and Objective-C source to find pins written in code.

Comments are blanked (so a word in a comment never decides anything), string constants
and simple arrays of the file are collected, and expressions made of literals, constants,
string templates (``"sha256/${KEY}"``) and concatenation are evaluated. Anything else is
left unresolved, and the caller says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Constants", "balanced", "split_top", "strip_comments", "unescape"]

_STRING = r'@?"(?:[^"\\\n]|\\.)*"'


def strip_comments(text: str) -> str:
    """``text`` with ``//`` and ``/* */`` comments blanked; strings and line numbers kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        two = text[i : i + 2]
        if text[i] == '"':
            end = i + 1
            while end < n and text[end] not in '"\n':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i : end + 1])
            i = end + 1
        elif two == "//":
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif two == "/*":
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def unescape(literal: str) -> str:
    """The text of a string literal (``"..."`` or ``@"..."``), common escapes resolved."""
    body = literal.removeprefix("@")[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def balanced(text: str, start: int) -> int:
    """Index just past the bracket group opening at ``text[start]`` (strings skipped)."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == '"':
            match = re.compile(r'"(?:[^"\\\n]|\\.)*"').match(text, i)
            i = match.end() if match else i + 1
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def split_top(text: str, separator: str = ",") -> list[str]:
    """``text`` split at ``separator`` outside brackets and strings; empty parts dropped."""
    parts, depth, current, i = [], 0, [], 0
    while i < len(text):
        char = text[i]
        if char == '"':
            match = re.compile(r'"(?:[^"\\\n]|\\.)*"').match(text, i)
            end = match.end() if match else i + 1
            current.append(text[i:end])
            i = end
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


_CONSTANT = re.compile(
    rf"(?:#define\s+(\w+)\s+|\b(\w+)\s*(?::\s*[\w.?]+\s*)?=\s*)({_STRING}(?:\s*\+\s*(?:{_STRING}|\w+))*)"
)
_ARRAY = re.compile(
    r"\b(\w+)\s*(?::[^=\n]+)?=\s*(?:new\s+\w+\s*\[\s*\]\s*|@|(?:listOf|arrayOf|setOf|"
    r"mutableListOf|List\.of|Set\.of|Arrays\.asList)\s*)?([\[({])"
)


@dataclass(slots=True)
class Constants:
    """String constants and arrays of strings declared in one file."""

    strings: dict[str, str] = field(default_factory=dict)
    arrays: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, code: str) -> Constants:
        """Collect from comment-free ``code``; later constants may use earlier ones."""
        constants = cls()
        for _ in range(2):  # a second pass resolves constants declared after their use
            for match in _CONSTANT.finditer(code):
                value = constants.evaluate(match.group(3))
                if value is not None and len(value) == 1:
                    constants.strings[match.group(1) or match.group(2)] = value[0]
            for match in _ARRAY.finditer(code):
                start = match.start(2)
                items = split_top(code[start + 1 : balanced(code, start) - 1])
                values = [constants.evaluate(item) for item in items]
                if items and all(v is not None and len(v) == 1 for v in values):
                    constants.arrays[match.group(1)] = [v[0] for v in values if v]
        return constants

    def evaluate(self, expression: str) -> list[str] | None:
        """The string(s) ``expression`` stands for, or None when it cannot be resolved."""
        expression = re.sub(
            r"\.(?:trimIndent|trim|toTypedArray|toList)\(\)|!!$", "", expression.strip()
        )
        expression = re.sub(r"\s+as\s+\w+\??$", "", expression)
        if expression.startswith("*"):
            return self.arrays.get(expression[1:].strip().rsplit(".", 1)[-1])
        parts = split_top(expression, "+")
        if len(parts) > 1:
            pieces = [self.evaluate(part) for part in parts]
            if any(p is None or len(p) != 1 for p in pieces):
                return None
            return ["".join(p[0] for p in pieces if p)]
        if re.fullmatch(_STRING, expression):
            return self._template(unescape(expression))
        name = expression.rsplit(".", 1)[-1]
        if re.fullmatch(r"\w+", name):
            if name in self.strings:
                return [self.strings[name]]
            return self.arrays.get(name)
        return None

    def _template(self, text: str) -> list[str] | None:
        unresolved = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal unresolved
            name = (match.group(1) or match.group(2)).rsplit(".", 1)[-1]
            if name not in self.strings:
                unresolved = True
                return match.group(0)
            return self.strings[name]

        resolved = re.sub(r"\$\{([\w.]+)\}|\$([A-Za-z_]\w*)", substitute, text)
        return None if unresolved else [resolved]
