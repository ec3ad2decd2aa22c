"""Whole-network checks beyond the first-order gradient: Hessian-vector products through the
hand-written backward passes, and per-example gradients under `jax.vmap`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jnet.gradcheck.report import VJPRow
from jnet.gradcheck.tolerances import Tolerances, error_scale, max_abs
from jnet.gradcheck.vjp import check_vjp
from jnet.layers.base import forward_with_state
from jnet.layers.checks import BackwardError
from jnet.network import apply
from jnet.trees import leaf_name

EXAMPLES = 4  # per-example gradients checked on the first few examples


def _losses(net, loss, y, key, state):
    """`(through_apply, pure)`: the loss through the hand-written passes, and without them."""
    f, value = apply(net), apply(loss)

    def through_apply(p, x, y=y, key=key):
        out = f(p, x, key=key, state=state) if net.stateful else f(p, x, key=key)
        return value(out[0] if net.stateful else out, y)

    def pure(p, x, y=y, key=key):
        return loss.forward(forward_with_state(net, p, x, key=key, state=state)[0], y)[0]

    return through_apply, pure


def second_order_rows(net, loss, params, x, y, key, state, name, options) -> tuple[list, list]:
    """HVPs of the loss: `jax.grad` of `<jax.grad(loss through apply), u>` vs pure autodiff."""
    through_apply, pure = _losses(net, loss, y, key, state)
    report = check_vjp(
        through_apply, params, x, reference=pure, order=2, name=name, names=("", "x"), **options
    )
    notes = [n for n in report.notes if "order-2" in n and "evaluated in" not in n]
    return [r for r in report.rows if r.order == 2], notes


def _bare(net, params, x, key, state) -> bool:
    """Whether the net takes one example without its batch axis (as vmap shows it)."""

    def out(x):
        return forward_with_state(net, params, x, key=key, state=state)[0]

    try:
        one, batch = jax.eval_shape(out, x[0]), jax.eval_shape(out, x)
    except (ValueError, TypeError, IndexError) as e:
        # A backward that fails on the bare shapes is the fault to report, not the forward.
        return isinstance(e, BackwardError) or getattr(e, "in_backward", False)
    return one.shape == batch.shape[1:]


def _refuses_one(net, params, x, key, state) -> str | None:
    """The forward's own ValueError on a batch of one (batch_norm training on one value per
    channel), if it raises one; None when it runs. A backward's fault is not a refusal: it
    is left to the check to report."""
    try:
        jax.eval_shape(lambda x: forward_with_state(net, params, x, key=key, state=state)[0], x[:1])
    except ValueError as e:
        if isinstance(e, BackwardError) or getattr(e, "in_backward", False):
            return None
        return str(e).splitlines()[0][:200]
    return None


def per_example_rows(
    net, loss, params, x, y, key, state, name: str, tol: Tolerances
) -> tuple[list[VJPRow], list[str]]:
    """Per-example gradients, `jax.vmap(jax.grad(...))` through the hand-written backward
    passes, against the same gradients example by example (`lax.map` over batches of one).

    Under vmap a backward sees one example's shapes (`(D,)`, not `(N, D)`) where the net
    takes them; a backward written for batches only (`x.T @ dy`) fails here. A net whose
    shapes need the batch axis (`flatten()`) gets examples of batch size 1. Both sides use
    the hand-written passes, so a wrong first-order gradient shows in the other tables, not
    twice; this one is about batching.
    """
    if net.stateful and key is not None:
        return [], [
            f"{name}: per-example gradients not checked: a stateful net in training mode "
            "normalises with batch statistics, which couple the examples"
        ]
    if x.ndim == 0 or x.shape[0] < 1 or jnp.ndim(y) == 0:
        return [], [f"{name}: per-example gradients not checked: no batch axis"]
    through_apply, _ = _losses(net, loss, y, key, state)
    bare = _bare(net, params, x, key, state)
    if not bare and (refusal := _refuses_one(net, params, x, key, state)):
        return [], [f"{name}: per-example gradients not checked: the net refuses a batch of one "
                    f"({refusal})"]  # fmt: skip
    # A few examples show a batching fault as well as all would; eager, as compiling a
    # vmapped and a looped gradient would cost more than running them.
    x, y = x[:EXAMPLES], jnp.asarray(y)[:EXAMPLES]
    xs, ys = (x, y) if bare else (x[:, None], y[:, None])
    keys = None if key is None else jax.random.split(key, x.shape[0])
    with_x = jnp.issubdtype(x.dtype, jnp.floating)
    grad = jax.grad(through_apply, argnums=(0, 1) if with_x else 0)
    in_axes = (None, 0, 0, None if key is None else 0)
    try:
        hand = jax.vmap(grad, in_axes=in_axes)(params, xs, ys, keys)
    except (ValueError, TypeError) as e:
        msg = str(e).splitlines()[0][:200]
        return [VJPRow(name, "params", "per-example", 1, None, None, None, 0, False)], [
            f"{name}: per-example gradients under jax.vmap fail through the hand-written "
            f"backward: {type(e).__name__}: {msg}"
        ]

    def one(i):  # example i as a batch of one: no vmap, the shapes of training
        g = grad(params, x[i][None], y[i][None], None if keys is None else keys[i])
        return (g[0], g[1][0] if bare else g[1]) if with_x else g

    ref = jax.tree.map(lambda *a: jnp.stack(a), *[one(i) for i in range(x.shape[0])])
    hand, ref = (hand, ref) if with_x else ((hand, None), (ref, None))
    rows = []
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    pairs = [(leaf_name(path), h, r) for (path, _), h, r in
             zip(flat, jax.tree.leaves(hand[0]), jax.tree.leaves(ref[0]), strict=True)]  # fmt: skip
    if with_x:
        pairs.append(("x", hand[1], ref[1]))
    overall = max(max_abs(r) for _, _, r in pairs)
    for leaf, h, r in pairs:
        h, r = np.asarray(h, np.float64), np.asarray(r, np.float64)
        same = h.shape == r.shape
        abs_err = max_abs(h - r) if same else float("inf")
        rel = abs_err / error_scale(max_abs(r), overall, tol) if abs_err else 0.0
        rows.append(VJPRow(name, leaf, "per-example", 1, abs_err, rel, None, 0, rel <= tol.rtol))
    shape = "bare examples" if bare else "examples of batch size 1"
    return rows, [
        f"{name}: per-example gradients under jax.vmap (first {x.shape[0]} examples, {shape}) "
        "compared with a loop over batches of one"
    ]
