"""Tutorial 002's figure: sigmoid, tanh, ReLU and leaky ReLU with their derivatives.

    python experiments/activations.py

Each curve comes from jnet's own layers: the function from `layer.forward`, the
derivative from the hand-written `layer.backward` with dy = 1 (elementwise layers, so
the VJP with ones is the derivative). The table checks those derivatives against
`jax.grad` of the forward pass and against the tutorial's closed forms: sigmoid
A (1 - A), tanh 1 - A^2, ReLU [z > 0], leaky ReLU max(0.1 z, z) (alpha 0.1 as in the
tutorial's figure).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import common as ex
from table import print_table, row

if TYPE_CHECKING:
    import jax
    import numpy as np

    import jnet

NAME = "activations"
Z_RANGE = (-10.0, 10.0)  # tutorial: np.linspace(-10, 10, 100)
ALPHA = 0.1  # tutorial: leaky_relu = np.maximum(0.1 * Z, Z)


def activations() -> dict[str, tuple[jnet.Layer, Callable]]:
    """name -> (layer, the tutorial's derivative as a function of z and A = f(z))."""
    import numpy as np

    import jnet

    return {
        "sigmoid": (jnet.sigmoid(), lambda z, a: a * (1 - a)),
        "tanh": (jnet.tanh(), lambda z, a: 1 - a**2),
        "relu": (jnet.relu(), lambda z, a: (z > 0).astype(z.dtype)),
        f"leaky_relu({ALPHA})": (jnet.leaky_relu(ALPHA), lambda z, a: np.where(z > 0, 1.0, ALPHA)),
    }


def parse_args(argv=None):
    p = ex.parser(NAME, __doc__, data=False)  # no data, no training: no --epochs either
    p.add_argument(
        "--points", type=ex.positive_int, default=401, help="points on [-10, 10] (odd: has 0)"
    )
    return ex.parse(p, argv, {"points": 41})


def forward_backward(layer: jnet.Layer, z: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """`(f(z), f'(z))` from the layer's forward and hand-written backward (dy = 1)."""
    import jax.numpy as jnp
    import numpy as np

    y, cache = layer.forward((), z)
    _, dz = layer.backward((), cache, jnp.ones_like(y))
    return np.asarray(y), np.asarray(dz)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax  # after the flags: --help and a bad flag answer without loading JAX
    import jax.numpy as jnp
    import numpy as np
    import plots

    timer = ex.Timer()
    z = jnp.linspace(*Z_RANGE, args.points)
    curves, rows, checks = {}, [], {}
    for name, (layer, tutorial_grad) in activations().items():
        y, dy = forward_backward(layer, z)
        autodiff = np.asarray(jax.vmap(jax.grad(lambda s, layer=layer: layer.forward((), s)[0]))(z))
        tutorial = tutorial_grad(np.asarray(z), y)
        checks[name] = {
            "max_abs_vs_jax_grad": float(np.max(np.abs(dy - autodiff))),
            "max_abs_vs_tutorial": float(np.max(np.abs(dy - tutorial))),
            "max_derivative": float(dy.max()),
        }
        curves[name] = (np.asarray(z), y, dy)
        rows += [
            row(
                name,
                "max |backward - jax.grad|",
                checks[name]["max_abs_vs_jax_grad"],
                None,
                unit="",
                note="hand-written vs autodiff",
            ),
            row(
                name,
                "max |backward - tutorial's formula|",
                checks[name]["max_abs_vs_tutorial"],
                0.0,
                unit="",
            ),
        ]
    print_table("Tutorial 002's activation figure, from jnet's forward/backward", rows)
    files = [
        plots.activations(
            curves,
            args.out / "activations.png",
            title="jnet forward (solid) and hand-written backward with dy = 1 (dashed)",
        )
    ]
    config = {"z_range": Z_RANGE, "points": args.points, "leaky_alpha": ALPHA}
    metrics = {"tutorial": "002", "config": config, "rows": rows, "checks": checks}
    return ex.finish(args, argv, metrics, files, timer())


if __name__ == "__main__":
    main(sys.argv[1:])
