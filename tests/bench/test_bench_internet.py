"""``pinlab bench internet --quick`` runs end to end, so it cannot rot; and its bound adds up."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pinlab.bench.internet import DEFAULT_SCENARIO, campaign_options, sim_name, wait_bound
from pinlab.bench.schedule import Job, makespan
from pinlab.cli import app
from pinlab.testbed.internet import Scenario, plan_internet


def test_quick_internet_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "internet.json"
    result = CliRunner().invoke(
        app, ["bench", "internet", "--quick", "--targets", "200", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "the scenario's bound" in result.output
    rows = json.loads(out.read_text())["rows"]
    assert [row["campaign"] for row in rows] == ["pinlab collect", "bare asyncio loop"]
    for row in rows:
        assert row["statuses_as_planted"], row["statuses"]
        assert row["peak_rss_mb"] > 0
    # Nothing beats waiting (the bare loop keeps no per-IP limit, so this bound is not its).
    assert rows[0]["seconds"] >= rows[0]["bound_seconds"] * 0.9


def test_default_scenario_plan_and_bound() -> None:
    scenario = Scenario.from_toml(DEFAULT_SCENARIO)
    plan = plan_internet(scenario, 1000, name=sim_name)
    counts = {o: sum(n.outcome == o for n in plan.names) for o in scenario.mix}
    assert counts == {o: round(share * 1000) for o, share in scenario.mix.items()}
    assert all(0.02 <= e.rtt <= 0.3 for e in plan.endpoints)
    options = campaign_options("127.0.0.1:53")
    bound = wait_bound(plan, options, scenario)
    blackholes = counts["blackhole"] * (2 * 3.0 + 0.5)  # two tries of the connect budget
    assert bound["slots"] >= blackholes / options.concurrency
    assert bound["bound"] >= max(bound["slots"], bound["dns"], bound["per_ip"], bound["longest"])


def test_ideal_schedule_by_hand() -> None:
    # Two slots, one address allowing 1: the address's tries run one after the other.
    jobs = [Job(0.0, "a", (1.0,)), Job(0.0, "a", (1.0,)), Job(0.0, "b", (0.5,))]
    assert makespan(jobs, concurrency=2, per_ip=1) == 2.0
    assert makespan(jobs, concurrency=1, per_ip=2) == 2.5  # one slot: all in a row
    # A retry comes back after its backoff and holds no slot meanwhile.
    retried = [Job(0.0, "a", (1.0, 1.0), (3.0,)), Job(0.5, "b", (2.0,))]
    assert makespan(retried, concurrency=1, per_ip=1) == 5.0  # 0-1, b 1-3, retry 4-5
    assert makespan([Job(2.0, "a", (1.0,))], concurrency=1, per_ip=1) == 3.0  # its release
