"""On-device augmentation: shapes, determinism per key, what a shift and a flip do, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet import augment

X = jnp.arange(6 * 5 * 4 * 2, dtype=jnp.float32).reshape(6, 5, 4, 2) + 1  # no zeros


def _shifted(img, dy, dx):
    """img translated by (dy, dx) with zero fill, in numpy."""
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_random_shift_translates_each_image_by_at_most_k_with_zero_fill():
    k = 2
    y = np.asarray(jax.jit(augment.random_shift(k))(jax.random.key(0), X))
    assert y.shape == X.shape and y.dtype == X.dtype
    shifts = []
    for img, out in zip(np.asarray(X), y, strict=True):
        found = [(a, b) for a in range(-k, k + 1) for b in range(-k, k + 1)
                 if np.array_equal(_shifted(img, a, b), out)]  # fmt: skip
        assert found, "output is not a translation of its input"
        shifts.append(found[0])
    assert len(set(shifts)) > 1  # each image draws its own shift
    np.testing.assert_array_equal(augment.random_shift(0)(jax.random.key(0), X), X)


def test_random_flip_mirrors_some_images_left_right():
    y = np.asarray(augment.random_flip()(jax.random.key(3), X))
    flipped = [np.array_equal(o, np.asarray(i)[:, ::-1]) for i, o in zip(X, y, strict=True)]
    kept = [np.array_equal(o, np.asarray(i)) for i, o in zip(X, y, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


@pytest.mark.slow
def test_same_key_same_batch_other_key_other_batch_inside_scan():
    aug = augment.compose(augment.random_shift(1), augment.random_flip())
    keys = jax.random.split(jax.random.key(0), 3)
    _, ys = jax.jit(lambda ks: jax.lax.scan(lambda c, k: (c, aug(k, X)), 0, ks))(keys)
    np.testing.assert_array_equal(ys[0], aug(keys[0], X))
    assert not np.array_equal(ys[0], ys[1])


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match=r"random_shift\(-1\): max_pixels must be"):
        augment.random_shift(-1)
    with pytest.raises(ValueError, match=r"random_flip\(\): expected an image batch"):
        augment.random_flip()(jax.random.key(0), jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="call the factory"):
        augment.compose(augment.random_flip)  # the factory, not its result
