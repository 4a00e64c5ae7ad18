"""A real TLS server on 127.0.0.1: ``openssl s_server`` serving a given chain.

Tests and benchmarks hand it a leaf certificate, its key and the extra certificates the
server should send (``-cert_chain``); they get back a port that accepts TLS connections
until the ``with`` block ends. The server runs in ``-www`` mode, which answers any number
of connections one after another, and sends exactly the chain it was given: no chain is
built from a system store (``-no-CAfile -no-CApath -no-CAstore``).

Choosing a free port is a race (another process may take it between our probe and the
server's bind), so a bind failure is retried on a fresh port. Readiness is OpenSSL's own
``ACCEPT`` line, then a TCP connect, so we never mistake someone else's listener for ours.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pinlab.errors import PinlabError

__all__ = ["LoopbackError", "openssl_server"]

HOST = "127.0.0.1"
_BIND_ERRORS = ("Address already in use", "bind", "unable to set up accept")


class LoopbackError(PinlabError, RuntimeError):
    """The loopback server could not be started (OpenSSL missing, bad key, no free port)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def openssl_server(
    cert_pem: bytes,
    key_pem: bytes,
    *,
    chain_pem: bytes = b"",
    extra_args: Sequence[str] = (),
    startup_timeout: float = 10.0,
    attempts: int = 5,
    openssl: str = "openssl",
) -> Iterator[int]:
    """Run ``openssl s_server`` on 127.0.0.1 for the ``with`` block; yield its port.

    ``cert_pem`` is the leaf, ``key_pem`` its private key, ``chain_pem`` the certificates
    sent after the leaf, in order (any number of PEM blocks, possibly none). The server is
    always terminated and its temporary files removed, whatever happens in the block.
    """
    binary = shutil.which(openssl)
    if binary is None:
        raise LoopbackError(f"{openssl!r} not found: install the Debian package openssl")
    with tempfile.TemporaryDirectory(prefix="pinlab-loopback-") as directory:
        folder = Path(directory)
        cert_file, key_file = folder / "cert.pem", folder / "key.pem"
        cert_file.write_bytes(cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key_pem)
        command = [binary, "s_server", "-www", "-no-CAfile", "-no-CApath", "-no-CAstore"]
        command += ["-cert", str(cert_file), "-key", str(key_file)]
        if chain_pem:
            chain_file = folder / "chain.pem"
            chain_file.write_bytes(chain_pem)
            command += ["-cert_chain", str(chain_file)]
        command += list(extra_args)
        last_error = "no attempt made"
        for attempt in range(attempts):
            port = _free_port()
            log = folder / f"server-{attempt}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [*command, "-accept", f"{HOST}:{port}"],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            try:
                if _wait_ready(process, log, port, startup_timeout):
                    yield port
                    return
                last_error = log.read_text(errors="replace").strip()
            finally:
                _stop(process)
            if not any(marker in last_error for marker in _BIND_ERRORS):
                break
        raise LoopbackError(f"openssl s_server did not start: {last_error or 'no output'}")


def _wait_ready(process: subprocess.Popen[bytes], log: Path, port: int, timeout: float) -> bool:
    """True once the server listens on ``port``; False if it exited (e.g. bind failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if b"ACCEPT" in log.read_bytes() and _accepts(port):
            # A connect can race with the server dying on a failed bind; check again.
            return process.poll() is None
        time.sleep(0.01)
    raise LoopbackError(f"openssl s_server did not accept on port {port} within {timeout} s")
