"""Test set-up: float64 for gradient checks, and where the real data lies."""

import pathlib

import jax
import pytest

from jnet.data import data_root

# Gradient checks compare analytic gradients to ~1e-10: that needs float64.
jax.config.update("jax_enable_x64", True)
# Start JAX's backends now, with the environment's XLA_FLAGS: an experiment or benchmark
# script run in-process (its flag parsing calls jnet.xla_flags.prefer_eigen_kernels)
# then changes nothing, whichever test happens to come first.
jax.devices()


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The folder holding mnist/ and catvnoncat/, by jnet.data's one rule: $JNET_DATA_DIR,
    else the user cache (~/.cache/jnet). Tests never download: without the files they skip."""
    path = data_root()
    if not (path / "mnist").is_dir():
        pytest.skip(f"real data not found at {path}; set JNET_DATA_DIR")
    return path
