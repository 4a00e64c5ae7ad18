"""Fixtures of the conformance suite: PKIs made once per session, real servers, the CLI.

Every scenario runs the installed ``pinlab`` script in a subprocess against
``openssl s_server`` on 127.0.0.1, so exit statuses, stdout and stderr are exactly what a
user would see. Validation time is always passed with ``--at`` (inside the fixed validity
window of :mod:`pinlab.testbed.pki`), so nothing depends on the wall clock.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from pinlab.testbed.loopback import openssl_server
from pinlab.testbed.pki import CA, KeyType, Leaf, pem_of, write_pem

PINLAB = Path(sys.executable).parent / "pinlab"
AT = "2030-06-01T00:00:00Z"
"""Validation time for every scenario: inside pki's 2020-2045 window, far from its edges."""
HOSTNAME = "localhost"


@dataclass(frozen=True)
class Run:
    """One finished ``pinlab`` invocation."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        """stdout and stderr with all whitespace runs collapsed (the console may wrap)."""
        return " ".join((self.stdout + "\n" + self.stderr).split())

    def __str__(self) -> str:
        return f"pinlab {' '.join(self.args)} -> {self.returncode}\n{self.stdout}\n{self.stderr}"


def run_pinlab(*args: str, timeout: float = 60.0) -> Run:
    """Run the ``pinlab`` console script of this venv and capture everything."""
    done = subprocess.run(
        [str(PINLAB), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    return Run(tuple(args), done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Pki:
    """The genuine hierarchy a client pins, plus another CA its trust store also trusts."""

    root: CA
    intermediate: CA
    """Genuine intermediate, pathLen 0: the usual thing to pin."""
    leaf: Leaf
    other_root: CA
    """A second trusted CA: the attacker's route to a publicly trusted certificate."""
    untrusted_root: CA
    ca_file: Path
    """PEM trust store: ``root`` and ``other_root`` (never ``untrusted_root``)."""


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Keys are generated once for the whole session (P-256 except one RSA intermediate)."""
    root = CA.root("Genuine Root")
    intermediate = root.child_ca("Genuine Intermediate", path_length=0, key_type=KeyType.RSA2048)
    leaf = intermediate.issue_leaf(HOSTNAME, "127.0.0.1")
    other_root = CA.root("Other Trusted Root")
    untrusted_root = CA.root("Untrusted Root")
    ca_file = write_pem(tmp_path_factory.mktemp("trust") / "trust.pem", root, other_root)
    return Pki(root, intermediate, leaf, other_root, untrusted_root, ca_file)


Serve = Callable[..., AbstractContextManager[int]]


@pytest.fixture(scope="session")
def serve() -> Serve:
    """``serve(leaf, *chain)``: a context manager running s_server for that chain."""

    def start(leaf: Leaf, *chain: object) -> AbstractContextManager[int]:
        chain_pem = b"".join(pem_of(item) for item in chain)  # type: ignore[arg-type]
        return openssl_server(leaf.cert_pem, leaf.key_pem, chain_pem=chain_pem)

    return start


@pytest.fixture(scope="session")
def genuine_port(pki: Pki, serve: Serve) -> Iterator[int]:
    """The genuine server (leaf + intermediate, root not sent), shared by many scenarios."""
    with serve(pki.leaf, pki.intermediate) as port:
        yield port


Check = Callable[..., Run]


@pytest.fixture(scope="session")
def check(pki: Pki) -> Check:
    """``check(port, *pins, extra=(), at=AT)``: ``pinlab check 127.0.0.1:PORT --sni localhost
    --at AT --ca-file TRUST --pin ...`` followed by the ``extra`` options."""

    def run(port: int, *pins: str, extra: tuple[str, ...] = (), at: str | datetime = AT) -> Run:
        when = at if isinstance(at, str) else at.isoformat()
        args = ["check", f"127.0.0.1:{port}", "--sni", HOSTNAME, "--at", when]
        args += ["--ca-file", str(pki.ca_file), "--timeout", "10"]
        for pin in pins:
            args += ["--pin", pin]
        return run_pinlab(*args, *extra)

    return run


Pinlab = Callable[..., Run]


def invoke_pinlab(*args: str) -> Run:
    """Run the CLI in this process (typer's CliRunner): for the many usage-error cases,
    where a subprocess per case would cost more than the check itself. An exception that
    escapes the command is reported as a traceback, as the real script would print it."""
    import traceback

    from typer.testing import CliRunner

    from pinlab.cli import app

    result = CliRunner().invoke(app, list(args))
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exc = result.exception
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(exc))
    return Run(tuple(args), result.exit_code, result.stdout, stderr)


@pytest.fixture(scope="session")
def pinlab_in_process() -> Pinlab:
    """``pinlab_in_process(*args)``: see :func:`invoke_pinlab`."""
    return invoke_pinlab


@pytest.fixture(scope="session")
def pinlab() -> Pinlab:
    """``pinlab(*args)``: run the console script (see :func:`run_pinlab`)."""
    return run_pinlab
