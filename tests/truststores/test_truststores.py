"""The root store over time, from certifi archives made here and fetched with real pip."""

from __future__ import annotations

import io
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pinlab.cli import app
from pinlab.testbed.pki import CA, pem_of
from pinlab.truststores import CertifiRelease, TrustStoreHistory, TrustStoreHistoryError

OLD_BUILD = datetime(2012, 1, 30, 20, 9, tzinfo=UTC)


def _wheel(folder: Path, version: str, roots: list[CA]) -> Path:
    path = folder / f"certifi-{version}-py3-none-any.whl"
    info = f"certifi-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("certifi/__init__.py", "")
        wheel.writestr("certifi/cacert.pem", b"".join(pem_of(root) for root in roots))
        wheel.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: certifi\nVersion: {version}\n"
        )
        wheel.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{info}/RECORD", "")
    return path


def _sdist(folder: Path, version: str, roots: list[CA]) -> Path:
    path = folder / f"certifi-{version}.tar.gz"
    files = {
        "setup.py": b"from setuptools import setup\n"
        b"setup(name='certifi', version='%s', packages=['certifi'])\n" % version.encode(),
        "PKG-INFO": f"Metadata-Version: 1.0\nName: certifi\nVersion: {version}\n".encode(),
        "certifi/__init__.py": b"",
        "certifi/cacert.pem": b"".join(pem_of(root) for root in roots),
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(f"certifi-{version}/{name}")
            member.size, member.mtime = len(data), OLD_BUILD.timestamp()
            archive.addfile(member, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def roots() -> list[CA]:
    return [CA.root(f"history root {n}") for n in range(3)]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, roots: list[CA]) -> Path:
    folder = tmp_path_factory.mktemp("index")
    _sdist(folder, "0.0.8", [roots[0]])
    _wheel(folder, "2016.2.28", [roots[0], roots[1]])
    _wheel(folder, "2021.10.8", [roots[1], roots[2]])
    return folder


def test_fetch_with_pip_then_index_by_date(index: Path, tmp_path: Path, roots: list[CA]) -> None:
    cache = tmp_path / "certifi"
    runner = CliRunner()
    result = runner.invoke(
        app, ["truststores", "fetch", "--dir", str(cache), "--find-links", str(index)]
    )
    assert result.exit_code == 0, result.output
    assert "3 certifi releases, 0.0.8 (2012-01-30) to 2021.10.8 (2021-10-08)" in result.output
    history = TrustStoreHistory.load(cache)
    pins = [{r.pin for r in roots}]
    assert [r.version for r in history.releases] == ["0.0.8", "2016.2.28", "2021.10.8"]
    in_2015 = history.at(datetime(2015, 6, 1, tzinfo=UTC))
    assert {c.pin for c in in_2015.roots} == {roots[0].pin}
    in_2019 = history.at(datetime(2019, 6, 1, tzinfo=UTC))
    assert {c.pin for c in in_2019.roots} == {roots[0].pin, roots[1].pin}
    assert history.at(datetime(2021, 10, 8, tzinfo=UTC)).name == "certifi 2021.10.8"
    assert pins  # the fixture made three distinct roots
    changes = history.changes()
    assert changes[["roots", "added", "removed"]].values.tolist() == [
        [1, 1, 0],
        [2, 1, 0],
        [2, 1, 1],
    ]
    lifetimes = history.root_lifetimes().set_index("pin")
    assert lifetimes.loc[roots[0].pin, "removed"]
    assert not lifetimes.loc[roots[2].pin, "removed"]
    listed = runner.invoke(app, ["truststores", "list", "--dir", str(cache)])
    assert "2016.2.28" in listed.output
    # A second fetch finds everything cached and downloads nothing new.
    again = runner.invoke(
        app, ["truststores", "fetch", "--dir", str(cache), "--find-links", str(index)]
    )
    assert again.exit_code == 0
    assert len(list(cache.iterdir())) == 3


def test_before_the_first_release_warns_and_uses_it(index: Path, tmp_path: Path) -> None:
    history = TrustStoreHistory([CertifiRelease.read(p) for p in sorted(index.iterdir())])
    with pytest.warns(UserWarning, match="predates certifi 0.0.8"):
        store = history.at(datetime(2010, 1, 1, tzinfo=UTC))
    assert store.name == "certifi 0.0.8"


def test_missing_cache(tmp_path: Path) -> None:
    with pytest.raises(TrustStoreHistoryError, match="pinlab truststores fetch"):
        TrustStoreHistory.load(tmp_path / "absent")
    fallback = TrustStoreHistory.load(tmp_path / "absent", on_missing="current")
    with pytest.warns(UserWarning, match="today's roots"):
        assert fallback.at(datetime(2015, 1, 1, tzinfo=UTC)).name.startswith("certifi ")
    result = CliRunner().invoke(app, ["truststores", "list", "--dir", str(tmp_path)])
    assert result.exit_code == 2


def test_unreadable_archive_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "certifi-2020.1.1-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(TrustStoreHistoryError, match="unreadable archive"):
        TrustStoreHistory.load(tmp_path)
