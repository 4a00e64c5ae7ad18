"""Every notebook executed against a small store, through ``pinlab report``, end to end."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from typer.testing import CliRunner, Result

from pinlab.cli import app
from pinlab.report.check import check_report, reader_problems
from tests.notebooks.conftest import NOTEBOOKS, REPO
from tests.test_memory import duckdb_shows

runner = CliRunner()


def _figure_calls(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum(
        len(re.findall(r"\bfigures\.plot_\w+\(", cell.source))
        for cell in nb.cells
        if cell.cell_type == "code"
    )


@pytest.fixture(scope="module")
def built_report(
    small_store: Path, bench_file: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """The report of the small store, built once: its folder and the command's output."""
    out = tmp_path_factory.mktemp("report") / "report"
    result = runner.invoke(
        app,
        ["report", "--db", str(small_store), "--out", str(out), "--bench", str(bench_file),
         "--data", str(shared_data), "--truststores", str(REPO / "data" / "certifi"),
         "-p", "forward_years=1", "-p", "release_every=60"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result.output


def test_report_executes_every_notebook(small_store: Path, built_report: tuple[Path, str]) -> None:
    out, output = built_report
    assert str((out / "index.html").resolve()) in output.replace("\n", "")
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Skipped" not in index
    for notebook in NOTEBOOKS:
        page = out / f"{notebook.stem}.html"
        assert f'href="{page.name}"' in index
        text = page.read_text(encoding="utf-8")
        # Every figure call drew a figure (SVG, inline), and no cell printed a traceback.
        assert text.count("data:image/svg+xml;base64,") >= _figure_calls(notebook), notebook.name
        assert "Traceback (most recent call last)" not in text, notebook.name
    assert repr(str(small_store)) in (out / "01-collection.html").read_text(encoding="utf-8")
    collection = (out / "01-collection.html").read_text(encoding="utf-8")
    assert "loopback" in collection  # the collected scan is described


def test_every_page_opens_with_findings_and_the_index_shows_them(
    built_report: tuple[Path, str],
) -> None:
    out, _ = built_report
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.count('<ul class="findings">') == len(NOTEBOOKS)
    for notebook in NOTEBOOKS:
        page = (out / f"{notebook.stem}.html").read_text(encoding="utf-8")
        assert '<h3 id="Findings">' in page, notebook.name
        assert "n = " in page, notebook.name
        assert "data: " in page, notebook.name


def test_lab_page_shows_the_machinery_agreeing_with_truth(built_report: tuple[Path, str]) -> None:
    out, _ = built_report
    text = " ".join((out / "06-lab-check.html").read_text(encoding="utf-8").split())
    assert (
        "Renewals found by the ledger (same new leaf, none extra) agreeing with truth.csv: 100%"
        in text
    )
    # The real-data pages leave the lab out, and say so.
    survival = (out / "03-pin-survival.html").read_text(encoding="utf-8")
    assert "Real data:" in survival
    assert "rotation lab" not in survival.split("Real data:")[1][:300]


def test_every_page_reads_cleanly_in_chromium(
    built_report: tuple[Path, str], tmp_path: Path
) -> None:
    """Headless Chromium renders each page; no NaN, inf, empty chart or negative cost shows."""
    out, _ = built_report
    checks = check_report(out, tmp_path / "screenshots")
    assert {c.page.name for c in checks} == {"index.html"} | {f"{n.stem}.html" for n in NOTEBOOKS}
    problems = {c.page.name: c.problems for c in checks if c.problems}
    assert problems == {}
    assert all(c.screenshot is not None and c.screenshot.stat().st_size > 20_000 for c in checks)


def test_the_reader_check_catches_what_it_must() -> None:
    """The check itself can fail: NaN, inf, negative costs are found in text."""
    assert reader_problems("median days: nan", "")
    assert reader_problems("alive at 1 year: inf", "")
    assert reader_problems("pinned handshake added -45 % to a handshake", "")
    assert not reader_problems("not resolved at this load (-45 %, spread 60 %)", "")
    assert not reader_problems("information: infinite medians are not reached", "")
    # A chart with nothing to draw is found in the page's figures (its SVG says so).
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    from pinlab import figures

    def page_with(ax: object) -> str:
        buffer = io.BytesIO()
        ax.figure.savefig(buffer, format="svg")  # type: ignore[attr-defined]
        encoded = base64.b64encode(buffer.getvalue()).decode()
        return f'<img alt="" src="data:image/svg+xml;base64,{encoded}"/>'

    empty = figures.plot_throughput(pd.DataFrame(columns=["source", "per_second", "label"]))
    assert reader_problems("", page_with(empty)) == ["figure 1 is an empty chart (nothing to draw)"]


def _notebooks(folder: Path, *sources: str, metadata: dict[str, object] | None = None) -> Path:
    folder.mkdir()
    kernel = {"name": "pinlab", "display_name": "pinlab", "language": "python"}
    nb = new_notebook(metadata={"kernelspec": kernel, **(metadata or {})})
    nb.cells = [new_code_cell(source) for source in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, folder / "01-tiny.ipynb")
    return folder


def _report(store: Path, out: Path, notebooks: Path, *options: str) -> Result:
    """``pinlab report`` of ``store`` into ``out`` with the notebooks of ``notebooks``."""
    arguments = ["report", "--db", str(store), "--out", str(out), "--notebooks", str(notebooks)]
    return runner.invoke(app, [*arguments, *options])


def test_a_failing_cell_fails_the_report_with_its_error(small_store: Path, tmp_path: Path) -> None:
    folder = _notebooks(
        tmp_path / "nb", "value = 1", "print('fine')", "raise ValueError(f'boom {value}')"
    )
    out = tmp_path / "out"
    result = _report(small_store, out, folder, "-p", "value=7")
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "pinlab: error: 01-tiny.ipynb: cell 3 raised ValueError: boom 7" in message
    assert "Traceback" not in result.output
    assert (out / "01-tiny.html").is_file()  # outputs so far, for diagnosis
    assert not (out / "index.html").exists()


def test_a_notebook_whose_data_is_absent_is_skipped(small_store: Path, tmp_path: Path) -> None:
    folder = _notebooks(
        tmp_path / "nb", "shared_data = 'x'", "raise AssertionError('must not run')",
        metadata={"pinlab": {"requires": {"shared_data": "real-histories/manifest.csv"}}},
    )  # fmt: skip
    out = tmp_path / "out"
    result = _report(small_store, out, folder, "--data", str(tmp_path / "nowhere"))
    assert result.exit_code == 0, result.output
    assert "skipped 01-tiny" in result.output
    assert "Skipped: no real-histories/manifest.csv" in (out / "index.html").read_text()


def test_the_memory_limit_reaches_the_notebooks_stores(small_store: Path, tmp_path: Path) -> None:
    """``--memory-limit`` (default: half of the machine) bounds the stores the notebooks
    open, as it bounds those of the other analysis commands."""
    folder = _notebooks(
        tmp_path / "nb",
        "db = ''",
        "from pinlab.store import open_store\n"
        "with open_store(db) as store:\n"
        "    [(limit,)] = store.connection.execute(\n"
        "        \"SELECT current_setting('memory_limit')\").fetchall()\n"
        "print(f'duckdb memory_limit={limit}')",
    )
    out = tmp_path / "out"
    result = _report(small_store, out, folder, "--memory-limit", "1GB")
    assert result.exit_code == 0, result.output
    expected = duckdb_shows("572MiB")  # 60 % of 1 GB, DuckDB's share
    assert f"duckdb memory_limit={expected}" in (out / "01-tiny.html").read_text()


def test_usage_errors_exit_2(small_store: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    missing = runner.invoke(app, ["report", "--db", str(tmp_path / "no.duckdb"), "--out", out])
    assert missing.exit_code == 2
    assert "no such store" in missing.output
    unknown = runner.invoke(app, ["report", "--db", str(small_store), "--out", out, "-p", "nope=1"])
    assert unknown.exit_code == 2
    assert "-p nope: no notebook declares it" in " ".join(unknown.output.split())
    bench = runner.invoke(
        app, ["report", "--db", str(small_store), "--out", out, "--bench", out + ".json"]
    )
    assert bench.exit_code == 2
    assert "no such file" in bench.output


def test_the_store_notebooks_read_a_dataset_folder(
    small_store: Path, shared_data: Path, tmp_path: Path
) -> None:
    from pinlab.store import Store, export_dataset

    dataset = tmp_path / "dataset"
    with Store.open(small_store, read_only=True) as store:
        export_dataset(store, dataset)
    out = tmp_path / "report"
    only = [option for n in ("01", "02", "03") for option in ("--notebook", n)]
    result = runner.invoke(
        app,
        ["report", "--db", str(dataset), "--out", str(out), *only, "--data", str(shared_data),
         "--truststores", str(REPO / "data" / "certifi"), "-p", "forward_years=1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    pages = sorted(p.name for p in out.glob("0*.html"))
    assert pages == ["01-collection.html", "02-renewals.html", "03-pin-survival.html"]
    for page in pages:
        text = (out / page).read_text(encoding="utf-8")
        assert "Traceback (most recent call last)" not in text, page
        assert "data:image/svg+xml;base64," in text, page
    assert repr(str(dataset)) in (out / "01-collection.html").read_text(encoding="utf-8")
