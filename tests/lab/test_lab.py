"""The rotation lab, for real: Pebble, lego and nginx on loopback, real ACME orders.

One small scenario runs once for the module (6 hosts x 4 rounds, every policy, a rollover
and a CA switch), observed by the collector; the tests read its truth, what the collector
stored (one scan per round) and the renewal ledger derived from it. Other tests break runs
on purpose and check that nothing is left running or on disk.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pinlab.certs import Certificate, load_certificate_file
from pinlab.cli import app
from pinlab.history import renewal_ledger
from pinlab.lab import (
    LabError,
    LabResult,
    Observed,
    ScenarioError,
    TruthRow,
    load_scenario,
    run_lab,
)
from pinlab.lab.check import lab_agreement, read_truth
from pinlab.lab.run import _mismatches
from pinlab.lab.scenario import Policy, Scenario, parse_scenario
from pinlab.pins import Semantics
from pinlab.store import Observation, Store
from pinlab.survival import observed_chains, replay
from pinlab.verify import TrustStore, verify_chain


def _now() -> datetime:
    return datetime.now(UTC)


ROOT = Path(__file__).resolve().parents[2]

SMALL = """
[lab]
name = "small"
rounds = 4
days_per_round = 10
start = 2024-06-01T00:00:00Z

[[ca]]
name = "primary"
rollover_rounds = [2]

[[ca]]
name = "secondary"
chain_length = 2
alternate_roots = 1

[[group]]
name = "fresh"
count = 2
policy = "fresh"
key_type = "p256"

[[group]]
name = "reuse"
policy = "reuse"
key_type = "rsa2048"

[[group]]
name = "rotate"
policy = "reuse-then-rotate"
rotate_every = 2
key_type = "p384"

[[group]]
name = "slow"
policy = "reuse"
key_type = "p256"
renew_every = 3

[[group]]
name = "switch"
policy = "reuse"
key_type = "p256"
switch_ca = { round = 3, to = "secondary" }
"""


def _scenario(text: str, tmp_path: Path) -> Scenario:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)


def _descendants(
    names: tuple[str, ...] = ("pebble", "nginx", "lego"), *, besides: Collection[int] = ()
) -> dict[int, str]:
    """Live processes below this one whose command is one the lab starts.

    ``besides`` names processes that were there before (another suite's nginx, kept for
    the whole session), which are not the lab's to clean up.
    """
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry.name)], commands[int(entry.name)] = int(fields[1]), command
    found = {}
    for pid, command in commands.items():
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor != os.getpid():
            ancestor = parents.get(ancestor)
        if pid in besides:
            continue
        if ancestor == os.getpid() and any(name in command for name in names):
            found[pid] = command
    return found


def _alive(processes: dict[int, str]) -> dict[int, str]:
    alive = {}
    for pid, command in processes.items():
        try:
            now = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if now == command and state != "Z":
            alive[pid] = command
    return alive


@dataclass
class Run:
    result: LabResult
    scenario: Scenario
    workdir_parent: Path
    processes: dict[int, str]
    db: Path

    def rows(self, host: str) -> list[TruthRow]:
        return sorted((r for r in self.result.truth if r.host == host), key=lambda r: r.round)


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("lab")
    scenario = _scenario(SMALL, base)
    parent = base / "work"
    parent.mkdir()
    seen: dict[int, str] = {}
    before = set(_descendants())
    db = base / "lab.duckdb"
    with Store.open(db) as store:
        result = run_lab(
            scenario,
            base / "out",
            store,
            validation_clock=_now,
            on_round=lambda i, s: seen.update(_descendants(besides=before)),
            workdir_parent=parent,
        )
    return Run(result, scenario, parent, seen, db)


def test_observed_leaves_equal_truth(lab_run: Run) -> None:
    assert len(lab_run.result.truth) == 6 * 4
    assert lab_run.result.mismatches == ()
    truth = {(r.host, r.round): r.leaf_sha256 for r in lab_run.result.truth}
    observed = {(o.host, o.round): o.leaf_sha256 for o in lab_run.result.observations}
    assert all(o.status == "ok" for o in lab_run.result.observations)
    assert observed == truth


def test_truth_csv_holds_the_truth(lab_run: Run) -> None:
    with lab_run.result.truth_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["host"], int(r["round"]), r["leaf_sha256"]) for r in rows] == [
        (r.host, r.round, r.leaf_sha256) for r in lab_run.result.truth
    ]
    assert {r["key_reused"] for r in rows if r["round"] == "0"} == {""}


def test_reuse_keeps_the_key_fresh_changes_it(lab_run: Run) -> None:
    for host in ("reuse-01.pinlab.test", "switch-01.pinlab.test"):
        rows = lab_run.rows(host)
        assert len({r.leaf_spki_sha256 for r in rows}) == 1
        assert len({r.leaf_sha256 for r in rows}) == 4  # renewed every round
        assert [r.key_reused for r in rows[1:]] == [True, True, True]
    for host in ("fresh-01.pinlab.test", "fresh-02.pinlab.test"):
        rows = lab_run.rows(host)
        assert len({r.leaf_spki_sha256 for r in rows}) == 4
        assert [r.key_reused for r in rows[1:]] == [False, False, False]


def test_reuse_then_rotate_rotates_every_second_renewal(lab_run: Run) -> None:
    rows = lab_run.rows("rotate-01.pinlab.test")
    assert [r.key_reused for r in rows[1:]] == [True, False, True]
    assert [r.key_type for r in rows] == ["P-384"] * 4


def test_key_types_follow_the_scenario(lab_run: Run) -> None:
    assert {r.key_type for r in lab_run.rows("reuse-01.pinlab.test")} == {"RSA-2048"}
    assert {r.key_type for r in lab_run.rows("fresh-01.pinlab.test")} == {"P-256"}


def test_rollover_changes_issuer_and_its_key(lab_run: Run) -> None:
    for host in ("fresh-01.pinlab.test", "reuse-01.pinlab.test", "rotate-01.pinlab.test"):
        before, at = lab_run.rows(host)[1:3]
        assert at.ca_event == "rollover"
        assert at.ca_epoch == before.ca_epoch + 1
        assert at.issuer_changed
        assert at.issuer_key_changed
        assert at.root_changed
        assert at.issuer_spki_sha256 != before.issuer_spki_sha256
        assert at.root_sha256 != before.root_sha256


def test_a_host_not_due_keeps_its_old_chain_through_the_rollover(lab_run: Run) -> None:
    rows = lab_run.rows("slow-01.pinlab.test")
    assert [r.renewed for r in rows] == [True, False, False, True]
    assert rows[2].leaf_sha256 == rows[0].leaf_sha256
    assert rows[2].ca_epoch == 0
    assert rows[3].ca_event == "rollover"
    assert rows[3].key_reused


def test_switching_ca_changes_issuer(lab_run: Run) -> None:
    rows = lab_run.rows("switch-01.pinlab.test")
    assert [r.ca for r in rows] == ["primary"] * 3 + ["secondary"]
    assert rows[3].ca_event == "switch"
    assert rows[3].issuer_changed
    assert rows[3].issuer_key_changed
    assert rows[3].root_changed
    assert rows[3].chain_length == 3  # the secondary CA has two intermediates


def test_store_holds_one_lab_scan_per_round_on_the_virtual_clock(lab_run: Run) -> None:
    with Store.open(lab_run.db, read_only=True) as store:
        scans = store.scans_df()
        observations = store.observations_df()
    assert list(scans["source"]) == ["lab"] * 4
    assert list(scans["scan_id"]) == [scan.scan_id for scan in lab_run.result.scans]
    assert list(scans["label"]) == [f"lab:small round {i}" for i in range(4)]
    parameters = [json.loads(text) for text in scans["parameters"]]
    assert [p["round"] for p in parameters] == [0, 1, 2, 3]
    assert {p["lab_run"] for p in parameters} == {lab_run.result.run_id}
    assert all(p["virtual_clock"] and p["validation_clock"] == "real" for p in parameters)
    virtual = [lab_run.scenario.observed_at(i) for i in range(4)]
    assert list(scans["started_at"]) == virtual
    assert list(scans["finished_at"]) == virtual
    days = sorted({t.isoformat()[:10] for t in observations["observed_at"]})
    assert days == ["2024-06-01", "2024-06-11", "2024-06-21", "2024-07-01"]
    round_of = {scan.scan_id: i for i, scan in enumerate(lab_run.result.scans)}
    stored = {
        (str(row["host"]), round_of[str(row["scan_id"])]): str(row["chain"][0])
        for row in observations.to_dict("records")
    }
    truth = {(r.host, r.round): r.leaf_sha256 for r in lab_run.result.truth}
    assert stored == truth
    assert set(observations["target_ip"]) == {"127.0.0.1"}
    assert (observations["sni"] == observations["host"]).all()


def test_result_observations_are_what_the_store_holds(lab_run: Run) -> None:
    with Store.open(lab_run.db, read_only=True) as store:
        frame = store.observations_df()
    stored = {
        (str(row["scan_id"]), str(row["host"])): tuple(row["chain"])
        for row in frame.to_dict("records")
    }
    result = {
        (o.observation.scan_id, o.host): o.observation.chain for o in lab_run.result.observations
    }
    assert result == stored


def test_validation_is_valid_at_real_time_against_every_pebble_root(lab_run: Run) -> None:
    observations = lab_run.result.observations
    assert {o.observation.validation for o in observations} == {"valid"}
    # The slow host serves its epoch-0 chain after the rollover: the old root stays trusted.
    slow = [o for o in observations if o.host == "slow-01.pinlab.test" and o.round == 2]
    assert slow[0].observation.validation == "valid"
    # Every root of the run: primary before and after its rollover, secondary and its
    # alternate; the scans name the anchors that they were validated against.
    roots = load_certificate_file(lab_run.result.roots_pem)
    assert len(roots) == 4
    assert {r.root_sha256 for r in lab_run.result.truth} < {r.sha256 for r in roots}
    anchors = json.loads(lab_run.result.scans[-1].parameters)["trust_anchors"]
    assert sorted(anchors) == sorted(r.sha256 for r in roots)


def test_validation_at_the_virtual_time_would_say_untrusted(lab_run: Run) -> None:
    # Why the lab validates at real time: Pebble dates leaves by the real clock, so at the
    # virtual observed_at (2024) they are not yet valid.
    with Store.open(lab_run.db, read_only=True) as store:
        certificates = store.certificates_df()
    der = dict(zip(certificates["sha256"], map(bytes, certificates["der"]), strict=True))
    store_ = TrustStore.from_certificates(
        load_certificate_file(lab_run.result.roots_pem), name="pebble"
    )
    seen = lab_run.result.observations[0].observation
    chain = [Certificate.from_der(der[digest]) for digest in seen.chain]
    assert verify_chain(chain, hostname=seen.host, at=_now(), trust_store=store_).ok
    at_virtual = verify_chain(chain, hostname=seen.host, at=seen.observed_at, trust_store=store_)
    assert at_virtual.failure is not None
    assert at_virtual.failure.value == "untrusted"


def test_ledger_of_a_lab_run_agrees_with_truth_on_key_reuse(lab_run: Run) -> None:
    with Store.open(lab_run.db, read_only=True) as store:
        ledger = renewal_ledger(store.observations_df(), store.certificates_df())
    round_at = {lab_run.scenario.observed_at(i): i for i in range(lab_run.scenario.rounds)}
    derived = {
        (str(row["host"]), round_at[pd.Timestamp(row["new_first_seen"]).to_pydatetime()]): (
            str(row["new_sha256"]), bool(row["key_reused"]), bool(row["issuer_key_changed"])
        )
        for row in ledger.to_dict("records")
    }  # fmt: skip
    truth = {
        (r.host, r.round): (r.leaf_sha256, r.key_reused, r.issuer_key_changed)
        for r in lab_run.result.truth
        if r.renewed and r.round > 0
    }
    assert derived == truth
    assert any(reused for _, reused, _ in truth.values())
    assert not all(reused for _, reused, _ in truth.values())


def test_a_stored_leaf_unlike_the_truth_is_a_mismatch() -> None:
    def seen(host: str, chain: tuple[str, ...], status: str = "ok") -> Observed:
        at = datetime(2024, 6, 1, tzinfo=UTC)
        row = Observation(
            "s", host, 443, host, "127.0.0.1", "127.0.0.1", at, status, None, None, None,
            chain, None, None, None, None, 1,
        )  # fmt: skip
        return Observed(2, row)

    expected = {"a": "aa", "b": "bb", "c": "cc", "d": "dd"}
    stored = [seen("a", ("aa", "root")), seen("b", ("xx",)), seen("c", (), "timeout")]
    assert _mismatches(expected, stored, 2) == [("b", 2), ("c", 2), ("d", 2)]


def test_nothing_left_after_a_normal_run(lab_run: Run) -> None:
    assert any("pebble" in c for c in lab_run.processes.values())
    assert any("nginx" in c for c in lab_run.processes.values())
    assert _alive(lab_run.processes) == {}
    assert list(lab_run.workdir_parent.iterdir()) == []
    prefixes = {c.split(" -p ")[1].split()[0] for c in lab_run.processes.values() if " -p " in c}
    assert prefixes
    assert not any(Path(p).exists() for p in prefixes)


TINY = """
[lab]
rounds = 3
[[ca]]
name = "primary"
rollover_rounds = [1]
[[group]]
name = "a"
policy = "reuse"
count = 2
"""


def test_nothing_left_after_an_error(tmp_path: Path) -> None:
    scenario = _scenario(TINY, tmp_path)
    seen: dict[int, str] = {}
    before = set(_descendants())

    def fail_at_round_1(round_: int, seconds: float) -> None:
        seen.update(_descendants(besides=before))
        if round_ == 1:
            raise RuntimeError("boom")

    with Store.open(tmp_path / "x.duckdb") as store, pytest.raises(RuntimeError, match="boom"):
        run_lab(
            scenario,
            tmp_path / "out",
            store,
            validation_clock=_now,
            on_round=fail_at_round_1,
            workdir_parent=tmp_path,
        )
    assert any("pebble" in c for c in seen.values())
    assert _alive(seen) == {}
    assert not any(p.name.startswith("pinlab-lab-") for p in tmp_path.iterdir())


def test_a_missing_binary_fails_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = _scenario(TINY, tmp_path)
    before = set(_descendants())
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with Store.open(tmp_path / "x.duckdb") as store, pytest.raises(LabError, match="'pebble'"):
        run_lab(scenario, tmp_path / "out", store, validation_clock=_now, workdir_parent=tmp_path)
    with Store.open(tmp_path / "x.duckdb", read_only=True) as store:
        assert store.scans_df().empty
    assert not (tmp_path / "out").exists()
    assert _descendants(besides=before) == {}


# -- scenarios ------------------------------------------------------------------------------


def test_default_scenario_parses() -> None:
    scenario = load_scenario(ROOT / "data" / "lab" / "default.toml")
    policies = {g.policy for g in scenario.groups}
    assert policies == set(Policy)
    assert any(ca.rollover_rounds for ca in scenario.cas)
    assert any(g.switch is not None for g in scenario.groups)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"policy": "frsh"}, "key 'policy': unknown policy 'frsh'"),
        ({"key_type": "rsa1024"}, "key 'key_type': unknown key type"),
        ({"policy": "reuse-then-rotate"}, "key 'rotate_every': required"),
        ({"count": 0}, "key 'count': must be at least 1"),
        ({"colour": "red"}, "unknown key(s) colour"),
        ({"ca": "nowhere"}, "key 'ca': no [[ca]] named 'nowhere'"),
        ({"switch_ca": {"round": 9, "to": "primary"}}, "key 'switch_ca': round 9"),
    ],
)
def test_bad_groups_name_the_key(patch: dict[str, object], message: str) -> None:
    group = {"name": "g", "policy": "fresh", **patch}
    data = {"lab": {"rounds": 3}, "group": [group]}
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, source="s.toml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("s.toml: [[group]] #1")


def test_a_rollover_after_the_last_round_is_refused() -> None:
    data = {
        "lab": {"rounds": 3},
        "ca": [{"name": "primary", "rollover_rounds": [3]}],
        "group": [{"name": "g", "policy": "fresh"}],
    }
    with pytest.raises(ScenarioError, match=r"rollover_rounds': round 3 is outside 1\.\.2"):
        parse_scenario(data, source="s.toml")


def test_reuse_then_rotate_policy() -> None:
    reuse = [Policy.REUSE_THEN_ROTATE.reuses_key(n, 3) for n in range(1, 7)]
    assert reuse == [True, True, False, True, True, False]
    assert not Policy.FRESH.reuses_key(1, None)
    assert Policy.REUSE.reuses_key(5, None)


def test_cli_refuses_a_bad_scenario_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[lab]\nrounds = 2\n[[group]]\nname = "g"\npolicy = "sometimes"\n')
    result = CliRunner().invoke(app, ["lab", "run", str(bad), "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2
    assert "unknown policy 'sometimes'" in result.output
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_interrupted_leaves_nothing(tmp_path: Path, signum: int) -> None:
    scenario = tmp_path / "long.toml"
    scenario.write_text(TINY.replace("rounds = 3", "rounds = 40"), encoding="utf-8")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONUNBUFFERED": "1"}
    command = [str(Path(sys.executable).parent / "pinlab"), "lab", "run", str(scenario)]
    before = set(_descendants())
    process = subprocess.Popen(
        [*command, "--db", str(tmp_path / "x.duckdb")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        # A background job starts with SIGINT ignored; a terminal's Ctrl-C would not be.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen: dict[int, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:
            seen.update(_descendants(besides=before))
            if line.startswith("round 1"):
                break
        assert any("pebble" in c for c in seen.values())
        process.send_signal(signum)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    assert _alive(seen) == {}
    assert list(temp.iterdir()) == []


# -- survival on the lab: outcomes the truth dictates -----------------------------------------


def _first_round(rows: list[TruthRow], changed: Callable[[TruthRow], bool]) -> int | None:
    return next((r.round for r in rows if r.round > 0 and changed(r)), None)


def test_replayed_pins_break_exactly_when_the_truth_says(lab_run: Run) -> None:
    with Store.open(lab_run.db, read_only=True) as store:
        frames = store.observations_df(), store.certificates_df()
        scans = store.scans_df()
    # Observations carry the virtual clock; Pebble dated the certificates by the real one.
    # The lab's scans record their anchors and the real validation time: the store alone
    # replays, whatever trust store the caller offers for other sources.
    chains = observed_chains(*frames, trust_stores=TrustStore.certifi(), scans=scans)
    by_hand = observed_chains(
        *frames,
        trust_stores=TrustStore.from_pem_file(lab_run.result.roots_pem),
        validate_at=_now(),
    )
    assert [c.verified for c in chains] == [c.verified for c in by_hand]
    assert all(chain.verified is not None for chain in chains)
    replayed = replay(chains, semantics=[Semantics.VERIFIED])
    first_pins = replayed[replayed["pinned_at"] == lab_run.scenario.observed_at(0)]
    oracle = {
        "leaf-spki": lambda r: r.key_reused is False,
        "intermediate-spki": lambda r: bool(r.issuer_key_changed),
        "root-spki": lambda r: bool(r.root_changed),
        "cert": lambda r: r.renewed,
    }
    hosts = {r.host for r in lab_run.result.truth}
    for strategy, changed in oracle.items():
        for host in hosts:
            expected = _first_round(lab_run.rows(host), changed)
            row = first_pins[(first_pins["host"] == host) & (first_pins["strategy"] == strategy)]
            assert len(row) == 1, (host, strategy)
            broken_at = row["broken_at"].iloc[0]
            got = None if pd.isna(broken_at) else _round_of(lab_run.scenario, broken_at)
            assert got == expected, (host, strategy)
    # In words: the reuse host keeps its leaf pin through the rollover; a fresh host breaks
    # it at its first renewal; the rollover (round 2) breaks issuer pins of renewed hosts.
    reuse = next(r.host for r in lab_run.result.truth if r.group == "reuse")
    fresh = next(r.host for r in lab_run.result.truth if r.group == "fresh")
    assert _first_round(lab_run.rows(reuse), oracle["leaf-spki"]) is None
    assert _first_round(lab_run.rows(fresh), oracle["leaf-spki"]) == 1
    assert _first_round(lab_run.rows(reuse), oracle["intermediate-spki"]) == 2


def _round_of(scenario: Scenario, when: pd.Timestamp) -> int:
    rounds = [i for i in range(scenario.rounds) if scenario.observed_at(i) == when]
    assert len(rounds) == 1
    return rounds[0]


def test_lab_certificates_are_dated_on_the_virtual_clock(lab_run: Run) -> None:
    """Renewal intervals and validity lengths read in the scenario's days (issue 17): a host
    renewing every round of 10 days renews every 10 days, the "slow" group (every third
    round) every 30, and each leaf's notBefore is the virtual time it was first served."""
    with Store.open(lab_run.db, read_only=True) as store:
        observations, certificates = store.observations_df(), store.certificates_df()
    ledger = renewal_ledger(observations, certificates)
    group_of = {r.host: r.group for r in lab_run.result.truth}
    intervals: dict[str, set[float]] = {}
    for host, days in zip(ledger["host"], ledger["renewal_interval_days"], strict=True):
        intervals.setdefault(group_of[host], set()).add(round(float(days), 6))
    days_per_round = lab_run.scenario.days_per_round
    expected = {g.name: {float(days_per_round * g.renew_every)} for g in lab_run.scenario.groups}
    assert intervals == expected
    assert intervals["slow"] == {30.0}
    first_round = {}
    for row in sorted(lab_run.result.truth, key=lambda r: r.round):
        first_round.setdefault(row.leaf_sha256, row.observed_at)
    stored = certificates.set_index("sha256")
    for leaf, virtual_at in first_round.items():
        own = Certificate.from_der(bytes(stored.loc[leaf, "der"]))
        assert pd.Timestamp(stored.loc[leaf, "not_before"]) == pd.Timestamp(virtual_at)
        validity = pd.Timestamp(stored.loc[leaf, "not_after"]) - pd.Timestamp(virtual_at)
        assert validity == own.not_after - own.not_before  # Pebble's own validity
        assert own.not_before > virtual_at  # the DER keeps Pebble's real dates


def test_replayed_death_bounds_of_a_lab_run_are_the_renewal_round(lab_run: Run) -> None:
    """With virtual certificate dates, a broken leaf-key pin's death is pinned to the round
    that served the new leaf: its notBefore bounds the switch from below."""
    with Store.open(lab_run.db, read_only=True) as store:
        observations, certificates = store.observations_df(), store.certificates_df()
        scans = store.scans_df()
    chains = observed_chains(
        observations, certificates, trust_stores=TrustStore.certifi(), scans=scans
    )
    replayed = replay(chains, strategies=["leaf-spki"], semantics=[Semantics.VERIFIED])
    broken = replayed[replayed["broken"]]
    assert len(broken) > 0
    assert (broken["death_lower_days"] == broken["death_upper_days"]).all()
    assert (broken["death_upper_days"] == broken["days_survived"]).all()


def test_lab_agreement_reports_the_machinery_agreeing_with_truth(lab_run: Run) -> None:
    """What page 06 of the report shows: every check agrees, on every fact of the truth."""
    with Store.open(lab_run.db, read_only=True) as store:
        observations, certificates = store.observations_df(), store.certificates_df()
        scans = store.scans_df()
    chains = observed_chains(
        observations, certificates, trust_stores=TrustStore.certifi(), scans=scans
    )
    replayed = replay(chains, semantics=[Semantics.VERIFIED])
    ledger = renewal_ledger(observations, certificates)
    truth = read_truth(lab_run.result.truth_csv)
    agreement = lab_agreement(truth, ledger, replayed)
    assert len(agreement) == 5
    assert (agreement["n"] > 0).all()
    assert (agreement["agree"] == agreement["n"]).all(), agreement
    # A ledger that lost a renewal is caught.
    broken = lab_agreement(truth, ledger.iloc[1:], replayed)
    assert broken["agree"].iloc[0] == broken["n"].iloc[0] - 1
