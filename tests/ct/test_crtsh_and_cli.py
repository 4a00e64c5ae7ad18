"""crt.sh (a loopback stand-in serving its JSON and downloads) and the ``pinlab ct`` commands."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from pinlab.cli import app
from pinlab.ct import CrtSh, DomainFilter, import_crtsh, read_crtsh_json
from pinlab.ct.errors import CTError
from pinlab.store import Store
from pinlab.testbed.ctserver import LogServer, StaticServer
from tests.ct.conftest import WATCHED, History, clock, key_pem

runner = CliRunner()


def _records(story: History, name: str) -> tuple[list[dict[str, Any]], dict[int, bytes]]:
    """crt.sh's view of the log: a record per certificate naming ``name``."""
    records, certificates = [], {}
    for stored in story.log.stored:
        entry = stored.entry
        parsed = x509.load_der_x509_certificate(entry.certificate)
        names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
        if name not in dns:
            continue
        record_id = 9000 + entry.index
        at = datetime.fromtimestamp(entry.timestamp / 1000, tz=UTC).replace(tzinfo=None)
        records.append({
            "issuer_ca_id": 1, "issuer_name": parsed.issuer.rfc4514_string(),
            "common_name": dns[0], "name_value": "\n".join(dns), "id": record_id,
            "entry_timestamp": at.isoformat(timespec="milliseconds"),
            "not_before": parsed.not_valid_before_utc.replace(tzinfo=None).isoformat(),
            "not_after": parsed.not_valid_after_utc.replace(tzinfo=None).isoformat(),
            "serial_number": format(parsed.serial_number, "x"), "result_count": 1,
        })  # fmt: skip
        certificates[record_id] = entry.certificate
    return records, certificates


@pytest.fixture
def crtsh(ct_history: History) -> Iterator[tuple[str, list[str]]]:
    """A crt.sh stand-in on loopback; yields its URL and the requests it saw."""
    records, certificates = _records(ct_history, "alpha.test")
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            if query.get("q") == "alpha.test" and query.get("output") == "json":
                body, kind = json.dumps(records).encode(), "application/json"
            elif query.get("d", "").isdigit() and int(query["d"]) in certificates:
                der = certificates[int(query["d"])]
                body = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
                kind = "application/pkix-cert"
            else:
                body, kind = b"[]", "application/json"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    finally:
        server.shutdown()
        server.server_close()


def _leaves(store: Store, host: str) -> list[tuple[Any, str]]:
    rows = store.connection.execute(
        "SELECT observed_at, chain[1] FROM observations WHERE host = ? ORDER BY observed_at",
        [host],
    ).fetchall()
    return [(at, leaf) for at, leaf in rows]


def test_crtsh_search_and_downloads_give_the_log_s_issuances(
    tmp_path: Path, crtsh: tuple[str, list[str]], served: LogServer, ct_history: History
) -> None:
    url, seen = crtsh
    client = CrtSh.at(url, rate=None, cache=tmp_path / "certs")
    records = client.search("alpha.test")
    assert len(records) == 10  # 6 precertificates, 4 final certificates
    with Store.open(tmp_path / "crtsh.duckdb") as store:
        result = import_crtsh(
            store, records, certificate=client.certificate, domains=DomainFilter(["alpha.test"]),
            source="alpha.test", clock=clock,
        )  # fmt: skip
        assert (result.stats.observations, result.stats.merged) == (6, 4)
        from_crtsh = _leaves(store, "alpha.test")
        again = import_crtsh(
            store, records, certificate=client.certificate, domains=DomainFilter(["alpha.test"]),
            source="alpha.test", clock=clock,
        )  # fmt: skip
        assert again.stats.observations == 0
        assert again.stats.duplicates == 6  # issuances, each seen as precert (+ final)
    assert len([p for p in seen if "d=" in p]) == 10  # the rerun read the cache
    assert len(list((tmp_path / "certs").glob("*.der"))) == 10
    with Store.open(tmp_path / "log.duckdb") as store:
        from pinlab.ct import BackfillOptions, backfill_log

        backfill_log(
            store, served.url, key=ct_history.log.key, domains=DomainFilter(WATCHED),
            options=BackfillOptions(), clock=clock,
        )  # fmt: skip
        assert _leaves(store, "alpha.test") == from_crtsh
        added = import_crtsh(
            store, records, certificate=client.certificate, domains=DomainFilter(["alpha.test"]),
            source="alpha.test", clock=clock,
        )  # fmt: skip
        assert added.stats.observations == 0


def test_crtsh_json_errors_are_clear() -> None:
    with pytest.raises(CTError, match="not JSON"):
        read_crtsh_json(b"<html>503</html>", source="x.json")
    with pytest.raises(CTError, match="record 1 has no numeric id"):
        read_crtsh_json(b'[{"name_value": "a"}]', source="x.json")
    assert read_crtsh_json(b'[{"id": 5, "entry_timestamp": "2021-01-02T03:04:05.7"}]')[
        0
    ].entry_timestamp == datetime(2021, 1, 2, 3, 4, 5, 700000, tzinfo=UTC)


def test_cli_log_static_and_crtsh(
    tmp_path: Path, served: LogServer, ct_history: History, crtsh: tuple[str, list[str]]
) -> None:
    domains = tmp_path / "domains.txt"
    domains.write_text("\n".join(WATCHED) + "\n")
    key = tmp_path / "log.pem"
    key.write_bytes(key_pem(ct_history.log))
    db = tmp_path / "cli.duckdb"
    result = runner.invoke(
        app,
        ["ct", "log", served.url, "--db", str(db), "--domains", str(domains), "--verify",
         "--public-key", str(key), "--batch-size", "16"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "issuances stored" in result.output
    assert "entries/s" in result.output
    with Store.open(db) as store:
        assert len(store.observations_df()) == len(ct_history.truth)

    tiles = ct_history.log.write_tiles(tmp_path / "tiles", origin="127.0.0.1/cli")
    with StaticServer(tiles) as static:
        result = runner.invoke(
            app,
            ["ct", "static", static.url, "--db", str(tmp_path / "static.duckdb"), "--domains",
             str(domains), "--verify", "--public-key", str(key)],
        )  # fmt: skip
    assert result.exit_code == 0, result.output

    url, _ = crtsh
    search = runner.invoke(
        app,
        ["ct", "crtsh", "alpha.test", "--db", str(tmp_path / "crtsh.duckdb"), "--url", url,
         "--certs", str(tmp_path / "certs"), "--rate", "1000"],
    )  # fmt: skip
    assert search.exit_code == 0, search.output
    export = tmp_path / "alpha.json"
    records, _ = _records(ct_history, "alpha.test")
    export.write_text(json.dumps(records))
    offline = runner.invoke(
        app,
        ["ct", "crtsh", str(export), "--db", str(tmp_path / "offline.duckdb"), "--offline",
         "--certs", str(tmp_path / "certs")],
    )  # fmt: skip
    assert offline.exit_code == 0, offline.output
    with Store.open(tmp_path / "offline.duckdb") as store:
        assert len(store.observations_df()) == 6


def test_cli_errors_are_one_line_and_exit_2(
    tmp_path: Path, served: LogServer, ct_history: History
) -> None:
    db = str(tmp_path / "e.duckdb")
    result = runner.invoke(app, ["ct", "log", served.url, "--db", db, "--verify"])
    assert result.exit_code == 2
    assert "--verify needs the log's public key" in result.output
    key = tmp_path / "log.pem"
    key.write_bytes(key_pem(ct_history.log))
    served.misbehaviour.bad_signature = True
    result = runner.invoke(app, ["ct", "log", served.url, "--db", db, "--public-key", str(key)])
    assert result.exit_code == 2
    assert "signature does not verify" in result.output
    result = runner.invoke(
        app, ["ct", "crtsh", str(tmp_path / "none.json"), "--db", db, "--offline"]
    )
    assert result.exit_code == 2
    assert "no such file" in result.output
