"""Fixtures shared by every test module."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real certificates of ../shared/data, read in place (never copied)."""
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"{SHARED_DATA} is missing: the project expects ../shared/data")
    return SHARED_DATA
