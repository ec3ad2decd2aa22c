"""`summary(net, input_shape)`: a table of a network's layers, shapes and parameter counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jnet.layers import Layer, Shape, init_with_state
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


def summary_rows(net: Layer, input_shape: Sequence[int]) -> list[SummaryRow]:
    """The rows `summary` prints: every layer, depth first, children after their parent."""
    rows: list[SummaryRow] = []

    def walk(layer: Layer, shape: Shape, path: tuple[int, ...]) -> Shape:
        out_shape, params, state = _abstract_init(layer, shape)
        count, size = _count(params)
        where = address(path, layer.name) if path else ""
        rows.append(SummaryRow(where, len(path) - 1, layer.name, out_shape, count, size,
                               _count(state)[0]))  # fmt: skip
        child_shape = shape
        for i, child in enumerate(layer.children):
            child_out = walk(child, child_shape, (*path, i))
            child_shape = child_out if layer.chained else shape
        return out_shape

    walk(net, tuple(input_shape), ())
    return rows[1:] if net.children else rows


def summary(net: Layer, input_shape: Sequence[int]) -> str:
    """A table, one row a layer: address, output shape, parameter count and bytes.

    Nested combinators' children are indented under them (a combinator's row counts
    its children's parameters); the totals at the bottom count each parameter once.
    Nothing is computed: `init` is traced abstractly.

    Example: `print(jnet.summary(jnet.mlp([512, 10]), (1, 784)))` ends with
    `total: 407,050 parameters (1.6 MB)`. Children run in order, so the output shape of
    a combinator whose children do not chain (a residual, a concat) is its own row's.
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
