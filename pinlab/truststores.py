"""Mozilla's root store over the years, from certifi's release history.

Validation at a past time must use the roots clients trusted then: a root removed in 2021
still anchored chains served in 2016. certifi has shipped Mozilla's store since 2011, one
release per store update, so its releases on PyPI are a dated record of the store.
:func:`fetch` downloads them with ``pip download --no-deps`` (the oldest ones are source
archives) into a cache folder; :class:`TrustStoreHistory` indexes that folder so that
:meth:`TrustStoreHistory.at` returns the store in force at a date.

A release's date is read from its version where the version is a date (``2016.2.28``,
``14.05.14``), and otherwise (``0.0.8``, ``1.0.1``) from the newest timestamp inside the
archive, which is when it was built.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pinlab.certs import Certificate, load_certificates
from pinlab.errors import MalformedCertificateError, PinlabError
from pinlab.pem import iter_pem
from pinlab.verify import TrustStore

__all__ = [
    "CertifiRelease",
    "TrustStoreHistory",
    "TrustStoreHistoryError",
    "available_versions",
    "choose_trust_stores",
    "fetch",
    "load_trust_stores",
]

_DATE_VERSION = re.compile(r"^(\d{2}|\d{4})\.(\d{1,2})\.(\d{1,2})(?:[.\-].*)?$")
_ARCHIVE = re.compile(r"^certifi-(?P<version>[^-]+?)(?:-py.*\.whl|\.tar\.gz|\.zip)$")


class TrustStoreHistoryError(PinlabError):
    """The certifi release cache cannot be read or fetched."""


@dataclass(frozen=True, slots=True)
class CertifiRelease:
    """One certifi release: its version, date and the roots it shipped."""

    version: str
    released: datetime
    archive: Path
    roots: tuple[Certificate, ...] = field(repr=False)

    @classmethod
    def read(cls, archive: Path) -> CertifiRelease:
        """Read the version, date and ``cacert.pem`` of a wheel or source archive."""
        match = _ARCHIVE.match(archive.name)
        if match is None:
            raise TrustStoreHistoryError(f"{archive.name}: not a certifi archive name")
        version = match["version"]
        try:
            pem, built = _read_archive(archive)
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as error:
            raise TrustStoreHistoryError(f"{archive}: unreadable archive: {error}") from None
        return cls(version, _version_date(version) or built, archive, _roots(pem, archive))

    @property
    def pins(self) -> frozenset[str]:
        """The ``sha256/`` pins of the release's roots."""
        return frozenset(root.pin for root in self.roots)


def _read_archive(archive: Path) -> tuple[bytes, datetime]:
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as bundle:
            names = [n for n in bundle.namelist() if n.endswith("cacert.pem")]
            if not names:
                raise TrustStoreHistoryError(f"{archive}: no cacert.pem inside")
            newest = max(datetime(*info.date_time, tzinfo=UTC) for info in bundle.infolist())
            return bundle.read(names[0]), newest
    with tarfile.open(archive) as bundle:
        members = [m for m in bundle.getmembers() if m.name.endswith("cacert.pem")]
        if not members:
            raise TrustStoreHistoryError(f"{archive}: no cacert.pem inside")
        newest = max(datetime.fromtimestamp(m.mtime, UTC) for m in bundle.getmembers())
        handle = bundle.extractfile(members[0])
        assert handle is not None
        return handle.read(), newest


def _version_date(version: str) -> datetime | None:
    match = _DATE_VERSION.match(version)
    if match is None:
        return None
    year, month, day = (int(part) for part in match.groups())
    if year < 100:
        year += 2000
    if year < 2013:  # 1.0.0 and friends are not dates
        return None
    try:
        return datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        return None


def _roots(pem: bytes, archive: Path) -> tuple[Certificate, ...]:
    """Every root of a bundle; a block that no longer parses is skipped, not fatal."""
    roots = []
    for block in iter_pem(pem):
        if not block.complete or block.label != b"CERTIFICATE":
            continue
        try:
            roots.extend(load_certificates(block.text, source=str(archive)))
        except MalformedCertificateError:
            continue
    return tuple(roots)


class TrustStoreHistory:
    """certifi's releases in date order; :meth:`at` gives the store in force at a time."""

    def __init__(self, releases: Sequence[CertifiRelease], *, fallback: TrustStore | None = None):
        self.releases = sorted(releases, key=lambda r: r.released)
        self._fallback = fallback
        self._stores: dict[str, TrustStore] = {}
        self._warned = False

    @classmethod
    def load(cls, directory: str | Path, *, on_missing: str = "error") -> TrustStoreHistory:
        """Index the archives of ``directory``.

        With ``on_missing="current"``, an absent or empty cache gives a history that always
        answers with the installed certifi store (and warns once), instead of an error.
        """
        folder = Path(directory)
        archives = sorted(folder.glob("certifi-*")) if folder.is_dir() else []
        if not archives:
            if on_missing == "current":
                return cls([], fallback=TrustStore.certifi())
            raise TrustStoreHistoryError(
                f"{folder}: no certifi releases; run `pinlab truststores fetch --dir {folder}`"
            )
        return cls([CertifiRelease.read(archive) for archive in archives])

    def describe(self) -> str:
        """One line saying what this history covers."""
        if not self.releases:
            return "installed certifi for every date (no release history cached)"
        first, last = self.releases[0], self.releases[-1]
        return (
            f"{len(self.releases)} certifi releases, {first.version} "
            f"({first.released.date()}) to {last.version} ({last.released.date()})"
        )

    def release_at(self, when: datetime) -> CertifiRelease | None:
        """The latest release at or before ``when`` (the first one, with a warning, before)."""
        if not self.releases:
            return None
        chosen = None
        for release in self.releases:
            if release.released > when:
                break
            chosen = release
        if chosen is None:
            self._warn(f"{when.date()} predates certifi {self.releases[0].version}; using it")
            chosen = self.releases[0]
        return chosen

    def at(self, when: datetime) -> TrustStore:
        """The trust store in force at ``when``."""
        release = self.release_at(when)
        if release is None:
            assert self._fallback is not None
            self._warn("no certifi release history: validating with today's roots")
            return self._fallback
        store = self._stores.get(release.version)
        if store is None:
            store = TrustStore.from_certificates(release.roots, name=f"certifi {release.version}")
            self._stores[release.version] = store
        return store

    def _warn(self, message: str) -> None:
        if not self._warned:
            warnings.warn(message, stacklevel=3)
            self._warned = True

    def changes(self) -> pd.DataFrame:
        """One row per release: roots shipped, added and removed since the previous one."""
        rows, previous = [], frozenset[str]()
        for release in self.releases:
            pins = release.pins
            rows.append({
                "version": release.version, "released": release.released, "roots": len(pins),
                "added": len(pins - previous), "removed": len(previous - pins),
            })  # fmt: skip
            previous = pins
        return pd.DataFrame(rows)

    def root_lifetimes(self) -> pd.DataFrame:
        """One row per root key: first and last release carrying it, and whether it left.

        How long a root pin would have lived, as far as the store is concerned.
        """
        seen: dict[str, dict[str, object]] = {}
        for release in self.releases:
            for root in release.roots:
                entry = seen.setdefault(root.pin, {
                    "pin": root.pin, "subject": root.subject, "first_release": release.released,
                })  # fmt: skip
                entry["last_release"] = release.released
        last = self.releases[-1].released if self.releases else None
        frame = pd.DataFrame(list(seen.values()))
        if frame.empty:
            return frame
        frame["removed"] = frame["last_release"] < last
        frame["years_in_store"] = (
            frame["last_release"] - frame["first_release"]
        ).dt.total_seconds() / (365.25 * 86400)
        return frame.sort_values("first_release").reset_index(drop=True)


def available_versions(pip_options: Sequence[str] = ()) -> list[str]:
    """certifi's versions as the package index lists them (``pip index versions``)."""
    output = _pip(["index", "versions", "certifi", *pip_options])
    for line in output.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
    raise TrustStoreHistoryError("pip listed no certifi versions")


def fetch(
    directory: str | Path,
    *,
    versions: Iterable[str] | None = None,
    pip_options: Sequence[str] = (),
    jobs: int = 4,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download every certifi release not yet in ``directory``; return the archives there.

    Already cached versions are skipped, so an interrupted fetch resumes.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = list(versions) if versions is not None else available_versions(pip_options)
    cached = {m["version"] for p in folder.iterdir() if (m := _ARCHIVE.match(p.name))}

    def download(version: str) -> str:
        if version not in cached:
            _pip(["download", "--no-deps", "--no-build-isolation", "-q", "-d", str(folder),
                  f"certifi=={version}", *pip_options])  # fmt: skip
        return version

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for version in pool.map(download, wanted):
            if progress is not None:
                progress(version)
    return sorted(folder.glob("certifi-*"))


def _pip(arguments: list[str]) -> str:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [
            line.strip()
            for line in result.stderr.splitlines()
            if line.strip().lower().startswith("error")
        ]
        reason = lines[-1] if lines else (result.stderr.strip().splitlines() or ["failed"])[-1]
        raise TrustStoreHistoryError(f"pip {' '.join(arguments[:3])}: {reason}")
    return result.stdout


def choose_trust_stores(
    ca_file: str | Path | None, cache: str | Path
) -> tuple[TrustStore | Callable[[datetime], TrustStore], str]:
    """What :func:`pinlab.survival.observed_chains` should validate with, and one line on it.

    ``ca_file`` (PEM) is one store for every date; otherwise the certifi release history
    cached in ``cache`` gives the store in force at each date, or, if the cache is empty,
    today's certifi store (with a warning).
    """
    chosen, described = load_trust_stores(ca_file, cache)
    return (chosen.at if isinstance(chosen, TrustStoreHistory) else chosen), described


def load_trust_stores(
    ca_file: str | Path | None, cache: str | Path
) -> tuple[TrustStore | TrustStoreHistory, str]:
    """The store or release history :func:`choose_trust_stores` chooses, as an object
    (what :func:`pinlab.survival.replay_store` takes), and one line on it."""
    if ca_file is not None:
        return TrustStore.from_pem_file(Path(ca_file)), f"{ca_file} for every date"
    history = TrustStoreHistory.load(cache, on_missing="current")
    return history, history.describe()
