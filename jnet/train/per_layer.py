"""Per-layer optimizers for a `serial` network (tutorial 004's larger last-layer rate)."""

from __future__ import annotations

import jax
import optax


def per_layer(
    default: optax.GradientTransformation, overrides: dict[int, optax.GradientTransformation]
) -> optax.GradientTransformation:
    """Per-layer optimizers for a `serial` network: layer index -> transformation.

    Example (tutorial 004): `per_layer(optax.sgd(0.05), {4: optax.sgd(0.1)})` for
    `serial(dense(100), relu(), dense(200), relu(), dense(10))`. Negative indices count
    from the end, so `{-1: optax.sgd(0.1)}` is the same.
    """
    transforms = {"default": default} | {f"layer{i}": t for i, t in overrides.items()}

    def labels(params):
        if not isinstance(params, tuple):
            raise ValueError(
                "per_layer: needs the params of a serial network (a tuple, one entry per "
                f"layer); got {type(params).__name__}"
            )
        n = len(params)
        outside = [i for i in overrides if not -n <= i < n]
        if outside:
            raise ValueError(
                f"per_layer: layer index {outside[0]} is outside the network's {n} layers "
                f"(valid: {-n} to {n - 1})"
            )
        chosen = {i % n: f"layer{i}" for i in overrides}
        return tuple(
            jax.tree.map(lambda _, i=i: chosen.get(i, "default"), p) for i, p in enumerate(params)
        )

    return optax.multi_transform(transforms, labels)
