"""The command starts light and helps cleanly: ``--help``, ``pins FILE`` and ``check`` load
no analysis library, the command list is the one the modules register, and every help
screen is plain text without RST literals or ``<bool>`` beside a flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pinlab.cli import app
from pinlab.commands._lazy import COMMANDS, load_module_commands
from pinlab.testbed.pki import CA, write_pem

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "lifelines", "duckdb", "pyarrow", "seaborn", "matplotlib", "dask")
PROBE = """
import json, sys
from pinlab.cli import main
sys.argv = ["pinlab", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})), file=sys.stderr)
"""


def _loaded(*args: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after ``pinlab *args``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=set(HEAVY)), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    loaded: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return loaded


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    leaf = CA.root("start root").child_ca("start intermediate").issue_leaf("start.test")
    return write_pem(tmp_path_factory.mktemp("start") / "chain.pem", leaf, leaf.issuer)


@pytest.mark.parametrize("args", [("--help",), ("check", "--help"), ("pins", "--help")])
def test_help_loads_no_analysis_library(args: tuple[str, ...]) -> None:
    assert _loaded(*args) == []


def test_pins_of_a_file_loads_no_analysis_library(chain_file: Path) -> None:
    assert _loaded("pins", str(chain_file)) == []


def test_check_loads_no_analysis_library_even_when_it_connects() -> None:
    # Port 9 on loopback refuses: the whole check path (endpoint, TLS) is imported and run.
    assert _loaded("check", "127.0.0.1:9", "--pin", "sha256/" + "A" * 43 + "=") == []


def test_the_probe_does_see_a_heavy_import(tmp_path: Path) -> None:
    # The history command reads a store with pandas: the probe must notice it.
    assert "pandas" in _loaded("history", "--db", str(tmp_path / "none.duckdb"))


def test_the_command_table_is_what_the_modules_register() -> None:
    registered: dict[str, str] = {}
    for module in sorted({entry.module for entry in COMMANDS.values()}):
        for name, command in load_module_commands(module).items():
            registered[name] = " ".join((command.help or "").split("\n\n")[0].split())
    assert registered == {name: entry.help for name, entry in COMMANDS.items()}
    listed = CliRunner().invoke(app, ["--help"]).output
    assert all(f"  {name} " in listed for name in COMMANDS)


def _every_command_path() -> list[list[str]]:
    paths: list[list[str]] = [[]]
    for module in sorted({entry.module for entry in COMMANDS.values()}):
        for name, command in load_module_commands(module).items():
            paths.append([name])
            for sub in getattr(command, "commands", {}):
                paths.append([name, sub])
    return paths


@pytest.mark.parametrize("path", _every_command_path(), ids=lambda p: " ".join(p) or "pinlab")
def test_help_is_plain_and_types_no_flag(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "``" not in result.output
    assert "<bool>" not in result.output
    assert "╭" not in result.output  # no rich panels: click's plain layout
    assert "Usage: pinlab" in result.output


def test_a_flag_shows_no_type_and_an_option_shows_its_value_type() -> None:
    lines = CliRunner().invoke(app, ["pins", "--help"], terminal_width=100).output.splitlines()
    json_line = next(line for line in lines if line.strip().startswith("--json"))
    timeout_line = next(line for line in lines if line.strip().startswith("--timeout"))
    assert json_line.split()[:2] == ["--json", "JSON"]
    assert timeout_line.split()[1] == "<float>"


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_bench_cli_quick(tmp_path: Path) -> None:
    out = tmp_path / "cli.json"
    result = CliRunner().invoke(app, ["bench", "cli", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "slowest start-up:" in result.output
    document = json.loads(out.read_text())
    rows = {row["command"]: row for row in document["rows"]}
    assert set(rows) == {"import cryptography.x509", "pinlab --help", "pinlab pins FILE"}
    assert rows["import cryptography.x509"]["x_floor"] == 1.0
    for row in rows.values():
        assert row["runs"] == 3
        assert row["median_ms"] > 0
    assert document["machine"]["cpu_count"]
