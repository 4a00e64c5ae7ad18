"""``pinlab history``: the renewal ledger of a store, as a file or a terminal summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from pinlab import history
from pinlab.commands._common import usage_errors
from pinlab.commands._options import MemoryLimitOption, memory_budget
from pinlab.commands._output import say, shown
from pinlab.errors import PinlabError
from pinlab.memory import MemoryBudget
from pinlab.store import open_store

DEFAULT_DB = Path("data/pinlab.duckdb")


def ledger_from_store(
    db: Path, *, memory: MemoryBudget | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ledger, leaf sightings) of the store at ``db``, opened read-only (within ``memory``)."""
    with open_store(db, memory=memory) as store:
        derived = history.History.from_store(store)
        return derived.ledger(), derived.sightings()


def write_table(frame: pd.DataFrame, out: Path) -> None:
    """Write ``frame`` as CSV or Parquet, chosen by the suffix."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        frame.to_csv(out, index=False)
    elif out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        raise PinlabError(f"{out}: write .csv or .parquet")


def history_command(
    db: Annotated[Path, typer.Option("--db", help="The store.")] = DEFAULT_DB,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the ledger (.csv or .parquet).")
    ] = None,
    summary: Annotated[bool, typer.Option("--summary", help="Print per-host summary.")] = False,
    memory_limit: MemoryLimitOption = None,
) -> None:
    """The renewal ledger: key reuse and issuer changes across renewals."""
    with usage_errors():
        if out is None and not summary:
            raise PinlabError("say what to produce: --out FILE and/or --summary")
        if out is not None and out.suffix not in {".csv", ".parquet"}:
            raise PinlabError(f"{out}: write .csv or .parquet")
        # Derived in DuckDB straight from the store, within the budget: DuckDB spills past
        # its share, and the ledger goes to the file without passing through pandas.
        with open_store(db, memory=memory_budget(memory_limit)) as store:
            derived = history.History.from_store(store)
            if out is not None:
                renewals = derived.write_ledger(out)
                hosts = derived.population_summary()["hosts"].iloc[0]
                say(f"{renewals} renewals of {int(hosts)} hosts: {shown(out)}")
            if summary:
                _print_summary(derived)


def _print_summary(derived: history.History) -> None:
    per_host = derived.host_summary()
    table = pd.DataFrame(
        {
            "host": per_host["host"].map(shown),
            "leaves": per_host["leaves"],
            "keys": per_host["distinct_keys"],
            "renewals": per_host["renewals"],
            "key reuse": per_host["key_reuse_rate"].map(_percent),
            "issuer chg": per_host["issuer_changes"].map(_count),
            "CA org chg": per_host["ca_org_changes"].map(_count),
            "median interval (d)": per_host["median_renewal_interval_days"].map(_number),
            "median key age (d)": per_host["median_key_age_days"].map(_number),
        }
    )
    # Plain text rather than a rich table: it must stay readable when piped or narrow.
    say(table.to_string(index=False))
    population = derived.population_summary().iloc[0]
    say(
        f"{int(population['hosts'])} hosts, {int(population['renewals'])} renewals; key reused "
        f"in {_percent(population['key_reuse_rate'])}, issuer changed in "
        f"{_percent(population['issuer_change_rate'])}, CA organisation changed in "
        f"{_percent(population['ca_org_change_rate'])} of renewals. A renewal here is any "
        "change of leaf; `pinlab audit` counts only those between chains that validate today."
    )


def _percent(value: Any) -> str:
    return "-" if pd.isna(value) else f"{float(value):.0%}"


def _count(value: Any) -> str:
    return "-" if pd.isna(value) else str(int(value))


def _number(value: Any) -> str:
    return "-" if pd.isna(value) else f"{float(value):.0f}"


def register(app: typer.Typer) -> None:
    """Add ``history`` to the CLI."""
    app.command("history")(history_command)
