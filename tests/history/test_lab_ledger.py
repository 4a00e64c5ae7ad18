"""The ledger of a real lab run equals the lab's truth, renewal for renewal.

``pinlab lab run data/lab/default.toml`` (Pebble, lego and nginx on loopback, once for the
module) renews six hosts over four rounds: fresh keys, reused keys, a key rotated every
second renewal, a host not due through a CA rollover, and a host that switches CA. Its
``truth.csv`` comes from lego's files alone; the ledger comes from the store's
observations. They must say the same thing.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pinlab import history
from pinlab.cli import app
from pinlab.history import History
from pinlab.store import Store

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["key_reused", "issuer_changed", "issuer_key_changed", "root_changed"]


@dataclass(frozen=True)
class LabRun:
    db: Path
    truth: list[dict[str, str]]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabRun:
    base = tmp_path_factory.mktemp("lab")
    db, out = base / "lab.duckdb", base / "out"
    result = CliRunner().invoke(
        app, ["lab", "run", str(ROOT / "data/lab/default.toml"), "--db", str(db), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with (out / "truth.csv").open(newline="", encoding="utf-8") as handle:
        return LabRun(db, list(csv.DictReader(handle)))


def _flag(text: str) -> bool | None:
    return {"true": True, "false": False, "": None}[text]


def _expected(truth: list[dict[str, str]]) -> pd.DataFrame:
    """One row per renewal the truth records, with what the ledger must say of it."""
    rows: list[dict[str, object]] = []
    previous: dict[str, str] = {}
    keys: dict[str, set[str]] = {}
    for row in sorted(truth, key=lambda r: (r["host"], int(r["round"]))):
        host = row["host"]
        if row["renewed"] == "true" and host in previous:
            rows.append(
                {
                    "host": host,
                    "lineage": f"{row['key_type']}#0",
                    "old_sha256": previous[host],
                    "new_sha256": row["leaf_sha256"],
                    "new_first_seen": pd.Timestamp(row["observed_at"]),
                    **{flag: _flag(row[flag]) for flag in FLAGS},
                    "key_seen_before": row["leaf_spki_sha256"] in keys[host],
                    "ca_event": row["ca_event"],
                }
            )
        previous[host] = row["leaf_sha256"]
        keys.setdefault(host, set()).add(row["leaf_spki_sha256"])
    return pd.DataFrame(rows).sort_values(["host", "new_first_seen"]).reset_index(drop=True)


def test_the_scenario_exercises_every_case(lab: LabRun) -> None:
    expected = _expected(lab.truth)
    assert {"renewal", "rollover", "switch"} <= set(expected["ca_event"])
    assert expected["key_reused"].any()
    assert not expected["key_reused"].all()
    reused_across_switch = expected[(expected["ca_event"] == "switch") & expected["key_reused"]]
    assert len(reused_across_switch) == 1


def test_ledger_equals_truth(lab: LabRun) -> None:
    expected = _expected(lab.truth)
    with Store.open(lab.db, read_only=True) as store:
        ledger = History.from_store(store).ledger()
    compared = ["host", "lineage", "old_sha256", "new_sha256", "new_first_seen", *FLAGS]
    actual = ledger[[*compared, "key_seen_before"]].astype(object)
    wanted = expected[[*compared, "key_seen_before"]].astype(object)
    assert actual.to_dict("records") == wanted.to_dict("records")
    assert ledger["ca_org_changed"].isna().all()  # Pebble's names carry no organisation
    assert (ledger["old_key_type"] == ledger["new_key_type"]).all()


def test_sightings_follow_the_rounds(lab: LabRun) -> None:
    with Store.open(lab.db, read_only=True) as store:
        sightings = History.from_store(store).sightings()
    served: dict[str, list[pd.Timestamp]] = {}
    for row in lab.truth:
        served.setdefault(row["leaf_sha256"], []).append(pd.Timestamp(row["observed_at"]))
    by_leaf = sightings.set_index("leaf")
    assert set(by_leaf.index) == set(served)
    for leaf, times in served.items():
        assert by_leaf.loc[leaf, "first_seen"] == min(times)
        assert by_leaf.loc[leaf, "last_seen"] == max(times)
        assert by_leaf.loc[leaf, "sightings"] == len(times)


def test_both_derivations_agree_on_the_lab(lab: LabRun) -> None:
    with Store.open(lab.db, read_only=True) as store:
        observations, certificates = store.observations_df(), store.certificates_df()
        derived = History.from_store(store)
        pd.testing.assert_frame_equal(
            derived.ledger(), history.renewal_ledger(observations, certificates)
        )
        pd.testing.assert_frame_equal(
            derived.sightings(), history.leaf_sightings(observations, certificates)
        )
