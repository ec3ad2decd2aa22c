"""On-device data augmentation for NHWC image batches: `(key, x) -> x` functions.

Pure jnp, so they run inside the compiled epoch (`fit(..., augment=...)` draws a key per
step), under `jit`, `lax.scan` and a sharded batch, and the data never goes back to the host.
Each image gets its own draw; the same key gives the same batch.

    aug = jnet.augment.compose(jnet.augment.random_shift(2), jnet.augment.random_flip())
    x_aug = aug(key, x)  # (N, H, W, C) -> (N, H, W, C)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

Augment = Callable[[jax.Array, jax.Array], jax.Array]


def _check(name: str, x: jax.Array) -> None:
    if not hasattr(x, "ndim") or x.ndim != 4:
        shape = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"{name}: expected an image batch (N, H, W, C); got {shape}")


def random_shift(max_pixels: int) -> Augment:
    """Translates each image by its own random (dy, dx) in [-max_pixels, max_pixels], zero fill.

    Args:
      max_pixels: the largest shift along each axis, an int >= 0 (0 is the identity).
    """
    name = f"random_shift({max_pixels!r})"
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0:
        raise ValueError(f"{name}: max_pixels must be an int >= 0; got {max_pixels!r}")
    k = max_pixels

    def shift(key: jax.Array, x: jax.Array) -> jax.Array:
        _check(name, x)
        if k == 0:
            return x
        n, h, w, c = x.shape
        # Offsets into the zero-padded image: k means no shift, 0 and 2k the extremes.
        starts = jax.random.randint(key, (n, 2), 0, 2 * k + 1)
        padded = jnp.pad(x, ((0, 0), (k, k), (k, k), (0, 0)))

        def crop(img, start):
            return lax.dynamic_slice(img, (start[0], start[1], 0), (h, w, c))

        return jax.vmap(crop)(padded, starts)

    return shift


def random_flip() -> Augment:
    """Mirrors each image left-right (the W axis) with probability 1/2."""

    def flip(key: jax.Array, x: jax.Array) -> jax.Array:
        _check("random_flip()", x)
        mirror = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
        return jnp.where(mirror, x[:, :, ::-1, :], x)

    return flip


def compose(*augments: Augment) -> Augment:
    """Applies `augments` in order, each with its own key split from the one given."""
    for i, a in enumerate(augments):
        try:
            takes_two = callable(a) and bool(inspect.signature(a).bind(None, None))
        except TypeError:
            takes_two = False
        except ValueError:  # no signature to read (a builtin): trust it
            takes_two = True
        if not takes_two:
            raise ValueError(
                f"compose: argument {i} must be an augmentation (key, x) -> x; got "
                f"{type(a).__name__} (call the factory: random_flip())"
            )

    def composed(key: jax.Array, x: jax.Array) -> jax.Array:
        for a, k in zip(augments, jax.random.split(key, max(len(augments), 1)), strict=False):
            x = a(k, x)
        return x

    return composed
