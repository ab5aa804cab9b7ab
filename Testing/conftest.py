"""Shared pytest fixtures. Tests run against real files, the real Slicer core and a real browser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real volumes fetched by scripts/fetch_data.sh (data/pyradiomics, data/napari)."""
    if not (DATA / "pyradiomics").is_dir():
        pytest.fail("data/ is missing: run `./dev setup` (scripts/fetch_data.sh)")
    return DATA
