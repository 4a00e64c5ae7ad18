"""The collect benchmark runs in its quick mode, so it cannot rot."""

from __future__ import annotations

from pinlab.bench.collect import run_collect_benchmark


def test_quick_collect_benchmark() -> None:
    frame = run_collect_benchmark(quick=True)
    clients = list(frame["client"])
    assert clients[0] == "pinlab collect"
    assert any(name.startswith("openssl s_time") for name in clients)
    timed = frame.dropna(subset=["handshakes_per_s"])
    assert (timed["handshakes_per_s"] > 0).all()
    assert (timed["cpu_ms_per_handshake"] > 0).all()
    memory = frame.dropna(subset=["peak_rss_mb"]).iloc[0]
    assert 0 < memory["peak_rss_mb"] < 500
