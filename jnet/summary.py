"""`summary(net, input_shape)`: a table of a network's layers, shapes and parameter counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.layers.base import Layer, Shape, forward_with_state, init_with_state, run_children
from jnet.layers.combinators import address


class SummaryRow(NamedTuple):
    """One layer: where it sits, what it is, what it outputs and what it holds."""

    address: str  # e.g. "1/0:dense(8)"; "" for the network itself
    depth: int  # nesting level, 0 for the network's direct children
    name: str
    output_shape: Shape
    params: int  # parameter count (state not included)
    bytes: int  # bytes of the parameters, at their dtypes
    state: int  # state entries (e.g. batch norm's running statistics)


def _abstract_init(layer: Layer, input_shape: Shape) -> tuple[Shape, Any, Any]:
    """`init` traced abstractly: output shape and the params' shapes, no arrays built."""
    shapes = {}

    def init(key):
        out_shape, params, state = init_with_state(layer, key, input_shape)
        shapes["out"] = tuple(out_shape)
        return params, state

    params, state = jax.eval_shape(init, jax.random.key(0))
    return shapes["out"], params, state


def _count(tree: Any) -> tuple[int, int]:
    leaves = jax.tree.leaves(tree)
    count = sum(math.prod(leaf.shape) for leaf in leaves)
    size = sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in leaves)
    return count, size


def _abstract_input(shape: Any, dtype: Any) -> Any:
    """The input as shapes and dtypes: an array, or a pair `(x, mask)` given as two shapes
    (the mask boolean), as the recurrent and attention layers take it."""
    if all(isinstance(d, int) for d in shape):
        return jax.ShapeDtypeStruct(tuple(shape), dtype)
    x_shape, mask_shape = shape
    mask = jax.ShapeDtypeStruct(tuple(mask_shape), bool)
    return jax.ShapeDtypeStruct(tuple(x_shape), dtype), mask


def _shape_of(y: Any) -> Any:
    return tuple(y.shape) if hasattr(y, "shape") else jax.tree.map(lambda a: tuple(a.shape), y)


def summary_rows(net: Layer, input_shape: Sequence[Any]) -> list[SummaryRow]:
    """The rows `summary` prints: every layer, depth first, children after their parent.

    A forward pass traced abstractly (nothing computed, no key: inference) walks into each
    combinator through its `wiring`, so every child's row shows the input it really gets
    and the params it is handed (a child holding a `tie`d leaf counts it; the totals count
    it once). The input is integer token ids if the network says so (`vocab_size`).
    """
    rows: list[SummaryRow | None] = []

    def walk(layer: Layer, params: Any, x: Any, state: Any, path: tuple[int, ...]) -> Any:
        at = len(rows)
        rows.append(None)
        if layer.wiring is not None and layer.children:

            def call(i, p, x_i, key, s):
                return walk(layer.children[i], p, x_i, s, (*path, i))

            y = run_children(layer, params, x, None, state, call)
        else:
            y = forward_with_state(layer, params, x, state=state)[0]
        count, size = _count(params)
        where = address(path, layer.name) if path else ""
        rows[at] = SummaryRow(where, len(path) - 1, layer.name, _shape_of(y), count, size,
                              _count(state)[0])  # fmt: skip
        return y

    def trace(key, x):
        _, params, state = init_with_state(net, key, _shape_of(x))
        walk(net, params, x, state, ())

    dtype = jnp.int32 if net.vocab_size else jnp.result_type(float)
    jax.eval_shape(trace, jax.random.key(0), _abstract_input(tuple(input_shape), dtype))
    return rows[1:] if net.children else rows


def summary(net: Layer, input_shape: Sequence[int]) -> str:
    """A table, one row a layer: address, output shape, parameter count and bytes.

    Nested combinators' children are indented under them (a combinator's row counts
    its children's parameters); the totals at the bottom count each parameter once.
    Nothing is computed: `init` is traced abstractly.

    Example: `print(jnet.summary(jnet.mlp([512, 10]), (1, 784)))` ends with
    `total: 407,050 parameters (1.6 MB)`. Each child's row shows the shape it outputs on
    the input its combinator's `wiring` gives it (a residual's branches each get the
    block's input); a `gpt`'s input shape is its token ids' `(N, T)`.
    """
    rows = summary_rows(net, input_shape)
    _, params, state = _abstract_init(net, tuple(input_shape))
    total, size = _count(params)
    head = ("layer", "output shape", "params", "bytes")
    body = [
        ("  " * max(r.depth, 0) + (r.address or r.name), str(r.output_shape), f"{r.params:,}",
         _human(r.bytes))  # fmt: skip
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(4)]

    def line(cells):
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs).rstrip()

    out = [line(head), "-" * (sum(widths) + 6), *map(line, body), "-" * (sum(widths) + 6)]
    out.append(f"total: {total:,} parameters ({_human(size)})")
    states = _count(state)[0]
    if states:
        out.append(f"state: {states:,} entries (not trained)")
    return "\n".join(out)


def _human(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
