"""Helpers shared by the training tests: bit-exact tree comparison, float32 initializers."""

import jax
import jax.numpy as jnp
import numpy as np


def assert_trees_equal(a, b) -> None:
    """Same structure and every leaf bit-identical."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y))


def all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def without_seconds(history: dict) -> dict:
    """A history without its wall-clock column, which no two runs share."""
    return {k: v for k, v in history.items() if k != "seconds"}


def float32(initializer):
    """`initializer` drawing float32 weights even with jax_enable_x64 on (as on a GPU)."""
    return lambda key, shape, dtype=None: initializer(key, shape, jnp.float32)


def blobs(n: int, features: int, *, shift: float = 0.0, dtype=np.float32, seed: int = 0):
    """`n` examples of 3 Gaussian classes in `features` dimensions: `(x, y)`."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1.5, (3, features))[y] + rng.normal(shift, 1, (n, features))
    return x.astype(dtype), y
