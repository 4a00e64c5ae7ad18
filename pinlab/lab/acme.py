"""The lab's ACME client: lego, driven as a command, one process per order.

lego (Debian package ``lego``) is used rather than certbot or the ``acme`` library because
its ``renew --reuse-key`` is exactly the behaviour the lab studies (a real client's
key-reuse option, not one we wrote), it needs no Python dependency, it generates the four
key types the lab wants (``--key-type rsa2048|rsa4096|ec256|ec384``), it trusts a private CA
through ``LEGO_CA_CERTIFICATES``, and its ``--http.webroot`` solver opens no port (Pebble
never validates in the lab, so the challenge file is written and never read).

Each host keeps its certificate and key in one lego folder shared by all hosts
(``certificates/<host>.crt|.key``); accounts live per ACME server. ``lego renew`` refuses to
run without an account on the server, so the first time a server is used (the start, a
rollover, a CA switch) :meth:`Lego.register` registers one by ordering a certificate for a
name no host uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pinlab.lab.errors import LabError
from pinlab.lab.pebble import require_binary
from pinlab.testbed.pki import KeyType

__all__ = ["LEGO_KEY_TYPES", "Issued", "Lego"]

LEGO_KEY_TYPES = {
    KeyType.RSA2048: "rsa2048",
    KeyType.RSA4096: "rsa4096",
    KeyType.P256: "ec256",
    KeyType.P384: "ec384",
}
_ALWAYS_RENEW_DAYS = "100000"  # renew whatever the remaining validity (Pebble: 5 years)
_ACCOUNT_NAME = "account-registration"


@dataclass(frozen=True, slots=True)
class Issued:
    """One certificate lego obtained: copies of its output files, kept per round."""

    host: str
    cert_file: Path
    """The bundle lego wrote (leaf, then the intermediates Pebble sent)."""
    key_file: Path
    server: str
    reuse_key_requested: bool
    seconds: float


class Lego:
    """Runs lego against Pebble servers; thread-safe, so orders can run concurrently."""

    def __init__(
        self,
        workdir: Path,
        ca_certificates: Path,
        *,
        domain: str,
        email: str = "lab@pinlab.test",
        timeout: float = 120.0,
    ) -> None:
        self.binary = require_binary("lego")
        self.path = workdir / "lego"
        self.webroot = workdir / "webroot"
        self.archive = workdir / "issued"
        for folder in (self.path, self.webroot, self.archive):
            folder.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "LEGO_CA_CERTIFICATES": str(ca_certificates)}
        self.env.pop("LEGO_PATH", None)
        self.domain = domain
        self.email = email
        self.timeout = timeout
        self._registered: set[str] = set()
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._running_lock = threading.Lock()  # apart: register() holds _lock around _run
        self._stopping = False

    def stop(self) -> None:
        """Kill the lego runs in flight and refuse new ones (an interrupted lab run).

        Worker threads would otherwise let lego finish its order and write into a folder
        that is being removed."""
        with self._running_lock:
            self._stopping = True
            running = list(self._running)
        for process in running:
            process.kill()
        for process in running:
            process.wait()

    def live_files(self, host: str) -> tuple[Path, Path]:
        """Where lego keeps the current bundle and key of ``host`` (what nginx serves)."""
        base = self.path / "certificates"
        return base / f"{host}.crt", base / f"{host}.key"

    def register(self, server: str) -> None:
        """Make sure an account exists on ``server`` (once per server, serialised)."""
        with self._lock:
            if server in self._registered:
                return
            self._run(server, f"{_ACCOUNT_NAME}.{self.domain}", KeyType.P256, ["run"])
            self._registered.add(server)

    def order(
        self,
        host: str,
        server: str,
        *,
        key_type: KeyType,
        reuse_key: bool,
        label: str,
    ) -> Issued:
        """Obtain a certificate for ``host`` from ``server``.

        The first order of a host is ``lego run`` (a fresh key of ``key_type``); later ones
        are ``lego renew``, with ``--reuse-key`` when ``reuse_key``. The output files are
        copied to ``issued/<host>/<label>.crt|.key`` and returned.
        """
        self.register(server)
        cert, key = self.live_files(host)
        if cert.exists():
            command = ["renew", "--days", _ALWAYS_RENEW_DAYS, "--no-random-sleep"]
            if reuse_key:
                command.append("--reuse-key")
        else:
            command, reuse_key = ["run"], False
        started = time.perf_counter()
        self._run(server, host, key_type, command)
        seconds = time.perf_counter() - started
        folder = self.archive / host
        folder.mkdir(exist_ok=True)
        kept_cert = Path(shutil.copyfile(cert, folder / f"{label}.crt"))
        kept_key = Path(shutil.copyfile(key, folder / f"{label}.key"))
        return Issued(host, kept_cert, kept_key, server, reuse_key, seconds)

    def _run(self, server: str, host: str, key_type: KeyType, command: list[str]) -> None:
        argv = [
            self.binary,
            "--server",
            server,
            "--accept-tos",
            "--email",
            self.email,
            "--path",
            str(self.path),
            "--key-type",
            LEGO_KEY_TYPES[key_type],
            "--http",
            "--http.webroot",
            str(self.webroot),
            "--domains",
            host,
            *command,
        ]
        with self._running_lock:
            if self._stopping:
                raise LabError("the lab run was stopped")
            process = subprocess.Popen(
                argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            self._running.add(process)
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise LabError(
                f"lego {command[0]} for {host} timed out after {self.timeout}s"
            ) from None
        finally:
            with self._running_lock:
                self._running.discard(process)
        result = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
            tail = "\n".join(tail.splitlines()[-5:])
            raise LabError(f"lego {command[0]} for {host} at {server} failed:\n{tail}")
