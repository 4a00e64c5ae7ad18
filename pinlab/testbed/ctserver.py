"""Serving test logs on 127.0.0.1: an RFC 6962 HTTP server that can lie, and nginx for tiles.

::

    with LogServer(log) as server:                # log: a pinlab.testbed.ctlog.LocalLog
        server.misbehaviour.bad_signature = True  # now every tree head is forged
    with StaticServer(directory) as static:       # nginx serving log.write_tiles(directory)
        backfill_static(store, static.url, ...)

:class:`Misbehaviour` makes the server lie on purpose (tampered entries, bad tree head
signatures, cut responses, a shrunken tree) for the error tests.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from pinlab.testbed.ctlog import LocalLog

__all__ = ["LogServer", "Misbehaviour", "StaticServer"]

HOST = "127.0.0.1"


@dataclass(slots=True)
class Misbehaviour:
    """Ways the server lies; change them while it runs."""

    entries: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    """Index -> (leaf_input, extra_data) served instead of the true entry."""
    bad_signature: bool = False
    """Serve tree heads whose signature does not verify."""
    truncate_from: int | None = None
    """Cut in half (closing the connection early) every get-entries body from this index."""
    tree_size: int | None = None
    """Serve the tree head of this size instead of the full tree (smaller: a rewind)."""
    max_batch: int = 1000
    """Most entries per get-entries response, as real logs cap them."""
    unavailable: int = 0
    """Answer this many next requests with 503 and ``Retry-After: 0`` (an overloaded log)."""


class LogServer:
    """Serves a :class:`LocalLog` over HTTP on ``127.0.0.1`` (RFC 6962 ``ct/v1`` API)."""

    def __init__(self, log: LocalLog, *, sth_timestamp: int | None = None) -> None:
        self.log = log
        self.misbehaviour = Misbehaviour()
        self.sth_timestamp = sth_timestamp
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The log's base URL (with a trailing slash)."""
        assert self._server is not None, "the server is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> LogServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append(self.path)
                parsed = urllib.parse.urlsplit(self.path)
                params = {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query).items()}
                if owner.misbehaviour.unavailable > 0:
                    owner.misbehaviour.unavailable -= 1
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    status, body, cut = owner.respond(parsed.path, params)
                except (KeyError, ValueError) as error:
                    status, body, cut = 400, json.dumps({"error": str(error)}).encode(), False
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                else:
                    self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def served_size(self) -> int:
        """The tree size the server currently admits to."""
        size = self.misbehaviour.tree_size
        return self.log.size if size is None else size

    def respond(self, path: str, params: dict[str, str]) -> tuple[int, bytes, bool]:
        """(status, body, cut short) of one request."""
        lie = self.misbehaviour
        size = self.served_size()
        if path == "/ct/v1/get-sth":
            sth = self.log.sth(size, timestamp=self.sth_timestamp)
            data = sth.to_json()
            if lie.bad_signature:
                signature = bytearray(sth.signature)
                signature[-1] ^= 0x01
                data["tree_head_signature"] = base64.b64encode(bytes(signature)).decode()
            return 200, json.dumps(data).encode(), False
        if path == "/ct/v1/get-entries":
            start, end = int(params["start"]), int(params["end"])
            if start < 0 or end < start or start >= size:
                return 400, b'{"error": "bad range"}', False
            end = min(end, size - 1, start + lie.max_batch - 1)
            items = []
            for index in range(start, end + 1):
                stored = self.log.stored[index]
                leaf, extra = lie.entries.get(index, (stored.entry.leaf_input, stored.extra_data))
                items.append(
                    {
                        "leaf_input": base64.b64encode(leaf).decode(),
                        "extra_data": base64.b64encode(extra).decode(),
                    }
                )
            body = json.dumps({"entries": items}).encode()
            return 200, body, lie.truncate_from is not None and start >= lie.truncate_from
        if path == "/ct/v1/get-proof-by-hash":
            wanted, tree_size = base64.b64decode(params["hash"]), int(params["tree_size"])
            for index in range(min(tree_size, self.log.size)):
                if self.log.tree.levels[0][index] == wanted:
                    proof = self.log.tree.inclusion_proof(index, tree_size)
                    encoded = [base64.b64encode(h).decode() for h in proof]
                    return (
                        200,
                        json.dumps({"leaf_index": index, "audit_path": encoded}).encode(),
                        False,
                    )
            return 404, b'{"error": "hash not found"}', False
        if path == "/ct/v1/get-sth-consistency":
            proof = self.log.tree.consistency_proof(int(params["first"]), int(params["second"]))
            encoded = [base64.b64encode(h).decode() for h in proof]
            return 200, json.dumps({"consistency": encoded}).encode(), False
        if path == "/ct/v1/get-roots":
            return 200, b'{"certificates": []}', False
        return 404, b'{"error": "not found"}', False


class StaticServer:
    """nginx serving a directory over plain HTTP on ``127.0.0.1`` (a tiled log's files).

    Data tiles go out gzip-compressed when the client accepts it, as real static-ct logs
    serve them. nginx runs in the foreground in a private prefix, removed on exit.
    """

    def __init__(self, root: str | Path, *, nginx: str | None = None, attempts: int = 5) -> None:
        self.root = Path(root).resolve()
        found = nginx or shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(found).is_file():
            raise RuntimeError("nginx not found: install the Debian package nginx (make deb)")
        self.binary = found
        self.attempts = attempts
        self.port = 0
        self._prefix: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL of the directory (with a trailing slash)."""
        return f"http://{HOST}:{self.port}/"

    def _config(self, prefix: Path) -> str:
        user = ""
        if os.geteuid() == 0:
            user = (
                f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
            )
        temp = prefix / "tmp"
        return (
            f"{user}worker_processes 1;\ndaemon off;\nmaster_process on;\n"
            f"pid {prefix / 'nginx.pid'};\nevents {{ worker_connections 256; }}\n"
            "http {\n  access_log off;\n  default_type application/octet-stream;\n"
            f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
            f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
            f"  scgi_temp_path {temp}/scgi;\n"
            "  gzip on;\n  gzip_types application/octet-stream;\n  gzip_min_length 64;\n"
            f"  server {{\n    listen {HOST}:{self.port};\n    root {self.root};\n"
            "    location = /checkpoint { default_type 'text/plain; charset=utf-8'; }\n"
            "    location /issuer/ { default_type application/pkix-cert; }\n  }\n}\n"
        )

    def __enter__(self) -> StaticServer:
        self._prefix = Path(tempfile.mkdtemp(prefix="pinlab-ct-nginx-"))
        (self._prefix / "tmp").mkdir()
        log = self._prefix / "error.log"
        for _ in range(self.attempts):
            with socket.socket() as probe:
                probe.bind((HOST, 0))
                self.port = int(probe.getsockname()[1])
            (self._prefix / "nginx.conf").write_text(self._config(self._prefix))
            self._process = subprocess.Popen(
                [self.binary, "-p", str(self._prefix), "-c", "nginx.conf", "-e", str(log)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._process.poll() is None:
                with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                    return self
                time.sleep(0.02)
            self._stop_process()
        message = log.read_text(errors="replace").strip() if log.exists() else ""
        self.__exit__(None, None, None)
        raise RuntimeError(f"nginx did not start: {message or 'no output'}")

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop_process()
        if self._prefix is not None:
            shutil.rmtree(self._prefix, ignore_errors=True)
            self._prefix = None
