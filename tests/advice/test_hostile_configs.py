"""Configurations nested thousands deep end in one line naming the file, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinlab.advice.pinconfig import parse_config
from pinlab.errors import PinlabError
from tests.conformance.conftest import invoke_pinlab

DEPTH = 100_000
DEEP = {
    "deep.json": '{"TSKPinnedDomains":' + "[" * DEPTH + "]" * DEPTH + "}",
    "deep-object.json": '{"a":' * DEPTH + "1" + "}" * DEPTH,
    "deep.xml": "<network-security-config>" + "<domain-config>" * DEPTH
    + "</domain-config>" * DEPTH + "</network-security-config>",
}  # fmt: skip
DEEP_PLIST = ("<plist><dict><key>TSKPinnedDomains</key><dict><key>a</key>"
              + "<array>" * DEPTH + "</array>" * DEPTH + "</dict></dict></plist>")  # fmt: skip


@pytest.mark.parametrize("name", sorted(DEEP))
def test_deep_nesting_is_a_clean_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(PinlabError):
        parse_config(DEEP[name].encode(), name=name)
    path = tmp_path / name
    path.write_text(DEEP[name])
    run = invoke_pinlab("audit", str(path))
    assert run.returncode == 2, str(run)
    assert "Traceback" not in run.stderr, str(run)
    assert run.stderr.startswith(f"pinlab: error: {name}: nested too deeply"), str(run)


def test_a_deep_plist_is_read_without_a_traceback(tmp_path: Path) -> None:
    # plistlib reads nesting without recursion: a result (with findings) is a clean outcome.
    parse_config(DEEP_PLIST.encode(), name="deep.plist")
    path = tmp_path / "deep.plist"
    path.write_text(DEEP_PLIST)
    run = invoke_pinlab("audit", str(path))
    assert "Traceback" not in run.stderr, str(run)
    assert run.stderr == "" or run.stderr.startswith("pinlab: error: "), str(run)
