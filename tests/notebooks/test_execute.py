"""Every notebook executed against a small store, through ``pinlab report``, end to end."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook
from typer.testing import CliRunner

from pinlab.cli import app
from tests.notebooks.conftest import NOTEBOOKS, REPO

runner = CliRunner()


def _figure_calls(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum(
        len(re.findall(r"\bfigures\.plot_\w+\(", cell.source))
        for cell in nb.cells
        if cell.cell_type == "code"
    )


def test_report_executes_every_notebook(
    small_store: Path, bench_file: Path, shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        ["report", "--db", str(small_store), "--out", str(out), "--bench", str(bench_file),
         "--data", str(shared_data), "--truststores", str(REPO / "data" / "certifi"),
         "-p", "forward_years=1", "-p", "release_every=60"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert str((out / "index.html").resolve()) in result.output.replace("\n", "")
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


def _notebooks(folder: Path, *sources: str, metadata: dict[str, object] | None = None) -> Path:
    folder.mkdir()
    kernel = {"name": "pinlab", "display_name": "pinlab", "language": "python"}
    nb = new_notebook(metadata={"kernelspec": kernel, **(metadata or {})})
    nb.cells = [new_code_cell(source) for source in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, folder / "01-tiny.ipynb")
    return folder


def test_a_failing_cell_fails_the_report_with_its_error(small_store: Path, tmp_path: Path) -> None:
    folder = _notebooks(
        tmp_path / "nb", "value = 1", "print('fine')", "raise ValueError(f'boom {value}')"
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["report", "--db", str(small_store), "--out", str(out), "--notebooks", str(folder),
         "-p", "value=7"],
    )  # fmt: skip
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
    result = runner.invoke(
        app,
        ["report", "--db", str(small_store), "--out", str(out), "--notebooks", str(folder),
         "--data", str(tmp_path / "nowhere")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped 01-tiny" in result.output
    assert "Skipped: no real-histories/manifest.csv" in (out / "index.html").read_text()


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
