"""Every README console example runs as written, after ``make demo``, against a store built as
the demo builds it (the real histories imported; the lab and the campaign are left out:
they take minutes and have their own tests).

Lines ending in a ``# network`` comment contact real hosts and ``# long`` ones run for
minutes: those alone are skipped. Any other ``$`` line that fails, or names a file that
does not exist, fails this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"#\s*(network|long)\b")


def readme_commands() -> list[str]:
    """The ``$`` lines of the README's console blocks, continuation lines joined."""
    commands: list[str] = []
    in_console = False
    pending = ""
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_console = line.strip() == "```console"
            continue
        if not in_console:
            continue
        if pending:
            pending += " " + line.strip()
        elif line.startswith("$ "):
            pending = line[2:]
        else:
            continue  # output shown under a command
        if pending.rstrip().endswith("\\") and "#" not in pending:
            pending = pending.rstrip()[:-1]
            continue
        commands.append(pending)
        pending = ""
    return commands


def _runnable() -> list[str]:
    return [command for command in readme_commands() if not SKIP.search(command)]


def test_the_readme_has_examples_of_both_kinds() -> None:
    commands = readme_commands()
    assert len(_runnable()) >= 15
    assert any(SKIP.search(command) for command in commands)
    assert all("data/pinlab.duckdb" not in c for c in _runnable())  # the demo's store


@pytest.fixture(scope="module")
def demo_checkout(
    real_db: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A checkout as ``make demo`` leaves it: ``../shared/data`` beside it, the versioned
    ``data/`` files, and ``data/demo/pinlab.duckdb`` holding the real histories."""
    top = tmp_path_factory.mktemp("readme")
    (top / "shared").symlink_to(shared_data.parent)
    checkout = top / "pinlab"
    (checkout / "data" / "demo").mkdir(parents=True)
    for versioned in (ROOT / "data").iterdir():
        if versioned.name == "demo" or versioned.suffix == ".duckdb":
            continue  # what a run of make demo left here is not versioned
        (checkout / "data" / versioned.name).symlink_to(versioned)
    shutil.copy(real_db, checkout / "data" / "demo" / "pinlab.duckdb")
    shim = top / "bin"
    shim.mkdir()
    (shim / "pinlab").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pinlab "$@"\n')
    (shim / "pinlab").chmod(0o755)
    return checkout


def test_every_readme_example_runs(demo_checkout: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{demo_checkout.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    failures = []
    for command in _runnable():
        done = subprocess.run(
            ["bash", "-c", f"set -e -o pipefail; {command}"],
            cwd=demo_checkout, env=env, capture_output=True, text=True, timeout=600,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            failures.append(f"$ {command}\n-> {done.returncode}\n{done.stdout[-800:]}\n"
                            f"{done.stderr[-1500:]}")  # fmt: skip
    assert failures == [], "\n\n".join(failures)
