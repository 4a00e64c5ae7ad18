"""A bulk load lets DuckDB's write-ahead log grow, and loses no committed row to a kill -9."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pinlab.store import Store

# 48 MiB of certificate rows in 12 transactions: three times DuckDB's default checkpoint
# threshold (16 MiB), so without the bulk setting the commits checkpoint on the way
COMMITS, ROWS, ROW_BYTES = 12, 2_000, 2_048

WRITE_THEN_DIE = textwrap.dedent(
    """
    import hashlib, os, signal, sys
    from pinlab.store import CertificateRow, Store

    store = Store.open(sys.argv[1])
    with store.checkpoints_every(256):
        for commit in range({commits}):
            store.write([], [
                CertificateRow.unparsable(
                    hashlib.sha256(b"%d-%d" % (commit, i)).hexdigest(), os.urandom({size}), "x"
                )
                for i in range({rows})
            ])
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint
    """
).format(commits=COMMITS, rows=ROWS, size=ROW_BYTES)


def _setting(store: Store) -> str:
    (value,) = store.connection.execute(
        "SELECT current_setting('checkpoint_threshold')"
    ).fetchone() or ("",)
    return str(value)


def test_bulk_setting_applies_inside_and_is_restored_after(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        before = _setting(store)
        with store.checkpoints_every(256):
            assert _setting(store) == "256.0 MiB"
        assert _setting(store) == before
        with pytest.raises(RuntimeError), store.checkpoints_every(64):
            raise RuntimeError("a load that fails half-way")
        assert _setting(store) == before


def test_a_failed_load_reports_its_own_error_when_the_setting_cannot_be_restored(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "s.duckdb")

    def load() -> None:
        with store.checkpoints_every(64):
            # a connection that takes no more statements, as a database a full disk
            # invalidated
            store.connection.close()
            raise RuntimeError("the load's own error")

    with pytest.raises(RuntimeError, match="the load's own"):
        load()
    store.close()


def test_rows_committed_during_a_bulk_load_survive_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    child = subprocess.run([sys.executable, "-c", WRITE_THEN_DIE, str(path)], check=False)
    assert child.returncode == -signal.SIGKILL
    # no commit checkpointed: every row is in the write-ahead log, none in the file yet
    wal = path.with_name(path.name + ".wal")
    assert wal.stat().st_size > COMMITS * ROWS * ROW_BYTES
    assert path.stat().st_size < ROWS * ROW_BYTES
    with Store.open(path) as store:  # DuckDB replays the log
        assert store.counts()["certificates"] == COMMITS * ROWS
        (found,) = store.connection.execute(
            "SELECT count(*) FROM certificates WHERE sha256 = ?",
            [hashlib.sha256(b"%d-%d" % (COMMITS - 1, ROWS - 1)).hexdigest()],
        ).fetchone() or (0,)
        assert found == 1
    assert not wal.exists()  # checkpointed on close
