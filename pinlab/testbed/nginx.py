"""A real nginx on 127.0.0.1 serving many SNI virtual hosts, for tests, benchmarks and the lab.

::

    hosts = [VirtualHost("a.test", leaf.cert_pem + leaf.chain_pem, leaf.key_pem), ...]
    with NginxFarm(hosts, workers=2) as farm:
        handshake("127.0.0.1", farm.port, sni="a.test")
        farm.reload(new_hosts)          # serve renewed certificates, same port

nginx runs in the foreground as the current user (``user`` is set to it when we are root,
so workers never drop to ``nobody``), with a private prefix in a temporary directory: its
config, certificates, keys, pid file, logs and temp paths all live there and are removed
on exit. The first virtual host is also the default server (clients without SNI get it).
Picking a free port races with other processes, so a failed bind is retried on a new port.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pinlab.errors import PinlabError

__all__ = ["NginxError", "NginxFarm", "VirtualHost"]

HOST = "127.0.0.1"
NGINX = "/usr/sbin/nginx"


class NginxError(PinlabError, RuntimeError):
    """nginx is missing or did not start; the message carries its error log."""


@dataclass(frozen=True, slots=True)
class VirtualHost:
    """One SNI name and what nginx serves for it."""

    server_name: str
    chain_pem: bytes
    """The leaf then the certificates sent after it, in order (nginx sends them as given)."""
    key_pem: bytes
    aliases: tuple[str, ...] = ()
    """More ``server_name`` entries for the same certificate (``*.a.test`` wildcards too)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _nginx_binary(nginx: str | None) -> str:
    for candidate in (nginx, shutil.which("nginx"), NGINX):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NginxError("nginx not found: install the Debian package nginx (make deb)")


class NginxFarm:
    """Context manager running one nginx with ``hosts`` on a free loopback port."""

    def __init__(
        self,
        hosts: Sequence[VirtualHost],
        *,
        workers: int = 2,
        nginx: str | None = None,
        startup_timeout: float = 10.0,
        attempts: int = 5,
    ) -> None:
        if not hosts:
            raise ValueError("an nginx farm needs at least one virtual host")
        names = [host.server_name for host in hosts]
        if len(set(names)) != len(names):
            raise ValueError("virtual host names must be distinct")
        self.hosts = list(hosts)
        self.workers = workers
        self.binary = _nginx_binary(nginx)
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self.port = 0
        self.prefix: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The address nginx listens on (always ``127.0.0.1``)."""
        return HOST

    @property
    def pid(self) -> int:
        """Process id of the nginx master."""
        if self._process is None:
            raise NginxError("nginx is not running")
        return self._process.pid

    def __enter__(self) -> NginxFarm:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Write the config, start nginx, wait until it accepts connections."""
        self.prefix = Path(tempfile.mkdtemp(prefix="pinlab-nginx-"))
        (self.prefix / "tmp").mkdir()
        last_error = "no attempt made"
        try:
            for _ in range(self.attempts):
                self.port = _free_port()
                self._write_config()
                log = self.prefix / "error.log"
                log.write_bytes(b"")
                self._process = subprocess.Popen(
                    [self.binary, "-p", str(self.prefix), "-c", "nginx.conf", "-e", str(log)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
                if self._wait_ready():
                    return
                self._terminate()
                last_error = log.read_text(errors="replace").strip()
                if "bind()" not in last_error and "in use" not in last_error:
                    break
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise NginxError(f"nginx did not start: {last_error or 'no output'}")

    def reload(self, hosts: Sequence[VirtualHost] | None = None, *, timeout: float = 10.0) -> None:
        """Serve ``hosts`` (or re-read the current ones) on the same port, without a restart.

        Returns once the old workers have exited, so every new connection sees the new set.
        """
        if self._process is None or self.prefix is None:
            raise NginxError("nginx is not running")
        if hosts is not None:
            self.hosts = list(hosts)
        old_workers = self._workers()
        self._write_config()
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self._workers()
            if current and not current & old_workers:
                return
            time.sleep(0.02)
        raise NginxError(f"nginx did not reload within {timeout} s: {self._log_tail()}")

    def stop(self) -> None:
        """Stop nginx (if running) and remove its directory. Safe to call twice."""
        self._terminate()
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None

    # -- internals -------------------------------------------------------------------------

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            # Ready means listening *and* workers forked: the master accepts connections on
            # the socket before its workers exist, and under load that gap is visible.
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                if self._workers():
                    return True
            time.sleep(0.02)
        return False

    def _workers(self) -> set[int]:
        """Pids of the master's current children (workers), from /proc."""
        if self._process is None:
            return set()
        master = self._process.pid
        children = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master and fields[0] != "Z":
                children.add(int(entry.name))
        return children

    def _log_tail(self) -> str:
        assert self.prefix is not None
        try:
            return (self.prefix / "error.log").read_text(errors="replace").strip()[-500:]
        except OSError:
            return ""

    def _write_config(self) -> None:
        assert self.prefix is not None
        prefix = self.prefix
        certs = prefix / "certs"
        certs.mkdir(exist_ok=True)
        servers = []
        for index, host in enumerate(self.hosts):
            chain, key = certs / f"{index}.pem", certs / f"{index}.key"
            chain.write_bytes(host.chain_pem)
            key.touch(mode=0o600)
            key.write_bytes(host.key_pem)
            default = " default_server" if index == 0 else ""
            servers.append(
                f"  server {{\n    listen {HOST}:{self.port} ssl{default};\n"
                f"    server_name {' '.join((host.server_name, *host.aliases))};\n"
                f"    ssl_certificate {chain};\n    ssl_certificate_key {key};\n"
                f'    location / {{ return 200 "{host.server_name}\\n"; }}\n  }}\n'
            )
        user = ""
        if os.geteuid() == 0:
            name = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            user = f"user {name} {group};\n"
        temp = prefix / "tmp"
        config = (
            f"{user}worker_processes {self.workers};\ndaemon off;\nmaster_process on;\n"
            f"pid {prefix / 'nginx.pid'};\nworker_rlimit_nofile 16384;\n"
            "events { worker_connections 8192; }\n"
            "http {\n  access_log off;\n"
            f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
            f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
            f"  scgi_temp_path {temp}/scgi;\n"
            "  ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_session_cache off;\n"
            "  ssl_session_tickets off;\n"
            "  server_names_hash_bucket_size 128;\n"
            f"  server_names_hash_max_size {4096 + 4 * len(self.hosts)};\n"
            + "".join(servers)
            + "}\n"
        )
        (prefix / "nginx.conf").write_text(config)
