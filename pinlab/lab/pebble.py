"""Pebble, Let's Encrypt's ACME test CA, run on 127.0.0.1 for the lab.

Pebble generates a new root and intermediate(s) every time it starts, so a **CA rollover** is
a restart. It needs its own HTTPS certificate: the lab makes one with :mod:`pinlab.testbed.pki`
(:func:`make_tls`) and hands the root to the ACME client. Validation is switched off
(``PEBBLE_VA_ALWAYS_VALID=1``): nothing in the lab resolves or serves challenge answers,
and nothing leaves the loopback interface.

Ports are picked free at start; a port someone takes between our probe and Pebble's bind
makes Pebble exit, and the start is retried on fresh ports.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pinlab.lab.errors import LabError
from pinlab.testbed.pki import CA

__all__ = ["HOST", "Pebble", "PebbleTLS", "free_port", "make_tls", "require_binary", "stop"]

HOST = "127.0.0.1"
_READY_LINE = "ACME directory available at"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (a race: callers retry on bind failure)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def require_binary(name: str, package: str | None = None) -> str:
    """The absolute path of ``name`` on PATH (or /usr/sbin), or a :class:`LabError`."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise LabError(
            f"{name!r} not found: install the Debian package {package or name} (make setup does it)"
        )
    return found


def stop(process: subprocess.Popen[bytes], *, timeout: float = 5.0) -> None:
    """Terminate ``process`` (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True, slots=True)
class PebbleTLS:
    """Pebble's HTTPS certificate and key, and the root PEM that clients must trust."""

    root_pem: Path
    cert_pem: Path
    key_pem: Path

    def context(self) -> ssl.SSLContext:
        """A client context trusting only this root."""
        return ssl.create_default_context(cafile=str(self.root_pem))


def make_tls(directory: Path) -> PebbleTLS:
    """Make the HTTPS root and certificate (localhost, 127.0.0.1) every lab Pebble uses."""
    root = CA.root("pinlab lab Pebble HTTPS root")
    leaf = root.issue_leaf("localhost", HOST)
    files = PebbleTLS(
        directory / "pebble-tls-root.pem",
        directory / "pebble-tls-cert.pem",
        directory / "pebble-tls-key.pem",
    )
    files.root_pem.write_bytes(root.cert_pem)
    files.cert_pem.write_bytes(leaf.cert_pem)
    files.key_pem.write_bytes(leaf.key_pem)
    files.key_pem.chmod(0o600)
    return files


class Pebble:
    """One running Pebble; use :meth:`start`, then :meth:`stop` (or a ``with`` block)."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, management_port: int, tls: PebbleTLS
    ) -> None:
        self.process = process
        self.port = port
        self.management_port = management_port
        self.tls = tls

    @property
    def directory_url(self) -> str:
        """The ACME directory URL, what clients take as ``--server``."""
        return f"https://{HOST}:{self.port}/dir"

    @classmethod
    def start(
        cls,
        workdir: Path,
        tls: PebbleTLS,
        *,
        name: str = "pebble",
        chain_length: int = 1,
        alternate_roots: int = 0,
        startup_timeout: float = 15.0,
        attempts: int = 4,
    ) -> Pebble:
        """Start Pebble with its files under ``workdir``; return once its directory answers."""
        binary = require_binary("pebble")
        workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PEBBLE_VA_ALWAYS_VALID": "1",
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
            "PEBBLE_CHAIN_LENGTH": str(chain_length),
            "PEBBLE_ALTERNATE_ROOTS": str(alternate_roots),
        }
        last_log = ""
        for attempt in range(attempts):
            port, management_port = free_port(), free_port()
            config = workdir / f"{name}-config.json"
            config.write_text(
                json.dumps(
                    {
                        "pebble": {
                            "listenAddress": f"{HOST}:{port}",
                            "managementListenAddress": f"{HOST}:{management_port}",
                            "certificate": str(tls.cert_pem),
                            "privateKey": str(tls.key_pem),
                            # Never contacted: validation is always valid.
                            "httpPort": 5002,
                            "tlsPort": 5001,
                            "ocspResponderURL": "",
                            "externalAccountBindingRequired": False,
                        }
                    }
                ),
                encoding="utf-8",
            )
            log = workdir / f"{name}-{attempt}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [binary, "-config", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=workdir,
                    start_new_session=True,  # Ctrl-C reaches us; we stop it in order
                )
            pebble = cls(process, port, management_port, tls)
            try:
                if pebble._wait_ready(log, startup_timeout):
                    return pebble
            except BaseException:
                stop(process)
                raise
            stop(process)
            last_log = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            if "address already in use" not in last_log:
                break
        raise LabError(f"Pebble did not start; its log ends with:\n{last_log}")

    def _wait_ready(self, log: Path, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if _READY_LINE in log.read_text(encoding="utf-8", errors="replace"):
                try:
                    self._get(f"https://{HOST}:{self.port}/dir")
                    return True
                except LabError:
                    pass
            time.sleep(0.05)
        return False

    def _get(self, url: str) -> bytes:
        try:
            with urllib.request.urlopen(url, context=self.tls.context(), timeout=5) as response:
                body: bytes = response.read()
                return body
        except (urllib.error.URLError, OSError) as error:
            raise LabError(f"Pebble at {url} did not answer: {error}") from None

    def _management(self, kind: str, index: int) -> bytes:
        return self._get(f"https://{HOST}:{self.management_port}/{kind}/{index}")

    def roots(self, count: int = 1) -> list[bytes]:
        """PEM of the root(s): index 0 is the default chain's, then the alternates."""
        return [self._management("roots", i) for i in range(count)]

    def intermediates(self, count: int = 1) -> list[bytes]:
        """PEM of the issuing intermediate of each chain (index 0: the default chain)."""
        return [self._management("intermediates", i) for i in range(count)]

    def stop(self) -> None:
        """Stop Pebble (idempotent)."""
        stop(self.process)

    def __enter__(self) -> Pebble:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
