"""Swift and Objective-C dictionary literals, read into Python values.

``[key: value, ...]`` and ``[a, b]`` (Swift), ``@{key : value}`` and ``@[a, b]``
(Objective-C). Keys and values may be strings, constants of the file, booleans (``true``,
``YES``, ``@YES``, ``@(YES)``, ``NSNumber(value: true)``) or nested literals. ``kTSK...``
identifiers become the TrustKit key names they hold. What is none of these becomes
:class:`Unresolved`, for the caller to report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pinlab.advice.readers.source import Constants, balanced, unescape

__all__ = ["Unresolved", "dictionary_with"]

_TOKEN = re.compile(
    r'\s*(@?"(?:[^"\\\n]|\\.)*"|@\[|@\{|@\(|@[A-Za-z_]\w*|[\[\]{}(),:]|[A-Za-z_.][\w.]*|-?\d+(?:\.\d+)?|\S)'
)
_TRUE, _FALSE = {"true", "YES", "@YES", "kCFBooleanTrue"}, {"false", "NO", "@NO", "kCFBooleanFalse"}


@dataclass(frozen=True, slots=True)
class Unresolved:
    """An expression pinlab did not evaluate (a call, an unknown identifier)."""

    text: str


def dictionary_with(code: str, key: str, constants: Constants) -> Any:
    """The literal dictionary of comment-free ``code`` that holds ``key`` (or kKEY)."""
    match = re.search(rf"(?<![\w\"])k?{key}\b|\"{key}\"", code)
    if match is None:
        return None
    depth, i = 0, match.start() - 1
    while i >= 0:  # walk back to the bracket that encloses the key
        char = code[i]
        if char in ")]}":
            depth += 1
        elif char in "([{":
            if depth == 0:
                start = i - 1 if i > 0 and code[i - 1] == "@" else i
                return _Parser(code[start : balanced(code, i)], constants).value()
            depth -= 1
        i -= 1
    return None


class _Parser:
    def __init__(self, text: str, constants: Constants) -> None:
        self.tokens = [t for t in _TOKEN.findall(text) if t.strip()]
        self.i = 0
        self.constants = constants

    def peek(self, ahead: int = 0) -> str:
        index = self.i + ahead
        return self.tokens[index] if index < len(self.tokens) else ""

    def take(self) -> str:
        token = self.peek()
        self.i += 1
        return token

    def value(self) -> Any:
        token = self.take()
        if token == "@{":
            return self.entries("}")
        if token == "@[":
            return self.items("]")
        if token == "[":
            return self.swift_collection()
        if token in {"@(", "("}:
            inner = self.value()
            self.skip_to_close(")")
            return inner
        if token.startswith(('"', '@"')):
            return self.suffixes(unescape(token))
        if token in _TRUE or token in _FALSE:
            return token in _TRUE
        if re.fullmatch(r"-?\d+(?:\.\d+)?", token):
            return float(token) if "." in token else int(token)
        if self.peek() == "(":  # a call: NSNumber(value: true), Date(...)
            self.take()
            start = self.i
            self.skip_to_close(")")
            inner = self.tokens[start : self.i - 1]
            if token.endswith("NSNumber") and any(t in _TRUE | _FALSE for t in inner):
                return next(t in _TRUE for t in inner if t in _TRUE | _FALSE)
            return Unresolved(token + "(" + " ".join(inner) + ")")
        name = token.rsplit(".", 1)[-1]
        if name.startswith("kTSK"):
            return name[1:]
        resolved = self.constants.evaluate(token)
        if resolved is not None:
            return resolved[0] if len(resolved) == 1 else list(resolved)
        return Unresolved(token)

    def suffixes(self, value: Any) -> Any:
        while self.peek() == "as":  # Swift casts: "x" as NSString
            self.take()
            self.take()
        return value

    def skip_to_close(self, close: str) -> None:
        depth = 1
        while self.i < len(self.tokens) and depth:
            token = self.take()
            if token in {"(", "[", "{", "@(", "@[", "@{"}:
                depth += 1
            elif token in {")", "]", "}"}:
                depth -= 1

    def swift_collection(self) -> Any:
        if self.peek() == ":" and self.peek(1) == "]":
            self.i += 2
            return {}
        if self.peek() == "]":
            self.take()
            return []
        start = self.i
        self.value()
        is_dict = self.peek() == ":"
        self.i = start
        return self.entries("]") if is_dict else self.items("]")

    def entries(self, close: str) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        while self.peek() and self.peek() != close:
            key = self.value()
            if self.take() != ":":
                break
            result[key if isinstance(key, str) else repr(key)] = self.suffixes(self.value())
            if self.peek() == ",":
                self.take()
        self.take()
        return result

    def items(self, close: str) -> list[Any]:
        result = []
        while self.peek() and self.peek() != close:
            result.append(self.suffixes(self.value()))
            if self.peek() == ",":
                self.take()
            elif self.peek() != close:
                break
        self.take()
        return result
