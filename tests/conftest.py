"""Test set-up: float64 for gradient checks, and where the real data lies."""

import os
import pathlib

import jax
import pytest

# Gradient checks compare analytic gradients to ~1e-10: that needs float64.
jax.config.update("jax_enable_x64", True)

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The folder holding mnist/ and catvnoncat/ (JNET_DATA_DIR, else ../shared/data)."""
    path = pathlib.Path(os.environ.get("JNET_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "mnist").is_dir():
        pytest.skip(f"real data not found at {path}; set JNET_DATA_DIR")
    return path
