"""Pin configurations as apps ship them, read into one model (:mod:`pinlab.advice.model`).

:func:`parse_config` recognises the form by its structure, never by a word that could sit
in a comment: a binary or XML ``<plist>`` (TrustKit or ``NSPinnedDomains``), an XML
``<network-security-config>`` (Android), a JSON object (TrustKit or ATS), or source code
(comments removed first) holding a TrustKit dictionary literal (Swift, Objective-C) or
OkHttp ``CertificatePinner`` calls (Kotlin, Java). The readers are in
:mod:`pinlab.advice.readers`; host matching is in :mod:`pinlab.advice.platforms`.

Only a file that is none of these, or not well-formed, raises :class:`ConfigError`; a bad
entry is a :class:`Finding` of the returned :class:`PinConfig`. Parsing is pure: the caller
reads the bytes.
"""

from __future__ import annotations

import json
import plistlib
import re
import xml.etree.ElementTree as ElementTree
from typing import Any
from xml.parsers.expat import ExpatError

from pinlab.advice.model import ConfigError, Finding, PinConfig, PinRule
from pinlab.advice.readers.android import read_android
from pinlab.advice.readers.apple import read_dictionary
from pinlab.advice.readers.literal import dictionary_with
from pinlab.advice.readers.okhttp import looks_like_okhttp, read_okhttp
from pinlab.advice.readers.source import Constants, strip_comments

__all__ = ["ConfigError", "Finding", "PinConfig", "PinRule", "parse_config"]


def parse_config(data: bytes, *, name: str = "config") -> PinConfig:
    """Read any of the supported forms, recognised by structure."""
    try:
        return _parse(data, name)
    except RecursionError:
        # json, plistlib and the readers recurse once per level: a file nested thousands
        # deep is no configuration an app ships, and must not end in a traceback.
        raise ConfigError(
            f"{name}: nested too deeply to be a pin configuration (arrays, objects or XML "
            "elements inside one another thousands of levels deep)"
        ) from None


def _parse(data: bytes, name: str) -> PinConfig:
    if data.startswith(b"bplist"):
        return read_dictionary(_load_plist(data, name), name)
    text = data.decode("utf-8", errors="replace")
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("<"):
        root = _xml_root(stripped.encode("utf-8"), name)
        if root.tag == "plist":
            return read_dictionary(_load_plist(stripped.encode("utf-8"), name), name)
        if root.tag == "network-security-config":
            return read_android(root, name)
        raise ConfigError(f"{name}: XML with root <{root.tag}>: neither a plist nor an "
                          "Android <network-security-config>")  # fmt: skip
    if stripped.startswith("{"):
        try:
            return read_dictionary(json.loads(stripped), name)
        except json.JSONDecodeError:
            pass  # maybe source code starting with a block
    code = strip_comments(text)
    if re.search(r"(?<![\w\"])k?TSKPinnedDomains\b|\"TSKPinnedDomains\"", code):
        document = dictionary_with(code, "TSKPinnedDomains", Constants.of(code))
        if isinstance(document, dict):
            return read_dictionary(document, name, source=True)
    if looks_like_okhttp(code):
        return read_okhttp(text, name)
    raise ConfigError(
        f"{name}: not a pin configuration pinlab reads (OkHttp CertificatePinner source, "
        "Android network security config XML, TrustKit JSON/plist/Swift/Objective-C, "
        "NSPinnedDomains plist)"
    )


def _xml_root(data: bytes, name: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise ConfigError(f"{name}: not well-formed XML ({error})") from None


def _load_plist(data: bytes, name: str) -> Any:
    try:
        return plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError, ExpatError) as error:
        raise ConfigError(
            f"{name}: not a readable plist ({error or type(error).__name__})"
        ) from None
