"""Ctrl-C twice during ``collect``: the second one cannot cut the clean shutdown short."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from pinlab.store import Store
from tests.collect.hostile import HostileServer, silent

PINLAB = str(Path(sys.executable).with_name("pinlab"))


def _interrupt_twice(tmp_path: Path, gap: float) -> subprocess.CompletedProcess[bytes]:
    db = tmp_path / "store.duckdb"
    with HostileServer(silent) as port:
        targets = tmp_path / "targets.txt"
        targets.write_text("".join(f"127.0.0.1,h{i}.test,{port}\n" for i in range(50)))
        process = subprocess.Popen(
            [PINLAB, "collect", str(targets), "--db", str(db), "--timeout", "30",
             "--concurrency", "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # A background job starts with SIGINT ignored; a terminal's Ctrl-C would not be.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # handshakes in flight, progress bar drawn
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        time.sleep(gap)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_a_second_ctrl_c_within_a_fifth_of_a_second_exits_as_cleanly(tmp_path: Path) -> None:
    for attempt, gap in enumerate((0.01, 0.1, 0.2)):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        done = _interrupt_twice(folder, gap)
        err = done.stderr.decode(errors="replace")
        assert done.returncode == 130, (gap, done.returncode, err)
        assert "Traceback" not in err, err
        assert "interrupted; continue with --resume" in err, err
        with Store.open(folder / "store.duckdb", read_only=True) as store:
            assert store.unfinished_scan(str((folder / "targets.txt").resolve())) is not None
