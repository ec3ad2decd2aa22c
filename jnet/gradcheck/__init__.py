"""Gradient verification: hand-written backward vs `jax.grad` and finite differences.

- `check_vjp(f, *args, reference=None, order=1, ...)`: any function's VJP (its custom_vjp
  rule, if any) against a reference's autodiff and finite differences (`vjp.py`).
- `check_gradients(net, loss, params, x, y, ...)`: a network as a whole and each of its
  layers on its own, so a report names the faulty layer (`gradients.py`, `layers.py`).
- `check_jvp(f, *args, reference=None, order=1, ...)`: a function's forward mode (its
  custom_jvp rule) and the reverse mode JAX derives from it by transposition (`jvp.py`).
- `jnet.testing.assert_gradients`, `assert_jvp`: the same, as assertions for a test suite.
- `jnet.gradcheck.registry.CASES`: the built-in layers, losses and tutorial architectures
  that the test suite and `python -m jnet.gradcheck` run over.

The pieces: `probes.py` (random projections, finite differences, kinks), `compare.py` (the
one engine behind every verdict, reverse and forward mode), `tolerances.py` (by dtype and
size), `report.py` (tables and JSON), `vmapped.py` (second order and per-example
gradients). docs/gradcheck.md explains the choices.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.gradcheck.gradients import check_gradients as check_gradients
from jnet.gradcheck.jvp import check_jvp as check_jvp
from jnet.gradcheck.report import GradientCheckError as GradientCheckError
from jnet.gradcheck.report import GradientReport as GradientReport
from jnet.gradcheck.report import NonFiniteInput as NonFiniteInput
from jnet.gradcheck.report import NothingToCheck as NothingToCheck
from jnet.gradcheck.report import VJPReport as VJPReport
from jnet.gradcheck.report import VJPRow as VJPRow
from jnet.gradcheck.tolerances import TOLERANCES as TOLERANCES
from jnet.gradcheck.tolerances import Tolerances as Tolerances
from jnet.gradcheck.vjp import check_vjp as check_vjp


def assert_trees_close(got: Any, want: Any, rtol: float, atol: float = 0.0) -> None:
    """Asserts the same pytree structure, then each leaf close (`np.testing.assert_allclose`).

    The failure message names the leaf by its path, e.g. `[0]['w']`.
    """
    assert jax.tree.structure(got) == jax.tree.structure(want), (
        f"tree structures differ: {jax.tree.structure(got)} vs {jax.tree.structure(want)}"
    )
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(want)[0]]
    for path, g, w in zip(paths, jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert jnp.shape(g) == jnp.shape(w), f"{path}: shape {jnp.shape(g)} vs {jnp.shape(w)}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=path)
