"""Write and read benchmark results: JSON (rows + machine) or CSV (machine as columns).

JSON is ``{"machine": {...}, "rows": [{column: value}, ...]}``. CSV keeps one row per
measurement and repeats the machine description in ``machine_*`` columns (non-scalar values
as JSON text), so that one file is self-describing and runs from several machines can be
concatenated. :func:`read_results` reads both back for the benchmark notebook.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from pinlab.bench.pins import BenchReport
from pinlab.errors import PinlabError

__all__ = ["SUFFIXES", "check_suffix", "read_results", "write_results"]

SUFFIXES = (".json", ".csv")


def check_suffix(path: Path) -> str:
    """The lower-case suffix of ``path`` if pinlab can write it; else a usage error."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PinlabError(f"--out {path}: use a .json or .csv file name")
    return suffix


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value


def write_results(report: BenchReport, path: str | Path) -> Path:
    """Write ``report`` to ``path`` (``.json`` or ``.csv``); return the path."""
    target = Path(path)
    suffix = check_suffix(target)
    if suffix == ".json":
        rows = [
            {key: _plain(value) for key, value in record.items()}
            for record in report.rows.to_dict(orient="records")
        ]
        document = {"machine": report.machine, "rows": rows}
        target.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
        return target
    machine: dict[str, Any] = {
        f"machine_{key}": value if _scalar(value) else json.dumps(value, default=str)
        for key, value in report.machine.items()
    }
    report.rows.assign(**machine).to_csv(target, index=False)
    return target


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _unjson(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def read_results(path: str | Path) -> BenchReport:
    """Read a file written by :func:`write_results`."""
    source = Path(path)
    if check_suffix(source) == ".json":
        document = json.loads(source.read_text(encoding="utf-8"))
        return BenchReport(pd.DataFrame.from_records(document["rows"]), document["machine"])
    frame = pd.read_csv(source)
    machine_columns = [column for column in frame.columns if column.startswith("machine_")]
    machine: dict[str, object] = {}
    if len(frame):
        for column in machine_columns:
            value = frame[column].iloc[0]
            machine[column.removeprefix("machine_")] = _unjson(_plain(value))
    return BenchReport(frame.drop(columns=machine_columns), machine)
