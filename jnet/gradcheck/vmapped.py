"""Whole-network checks beyond the first-order gradient: Hessian-vector products through the
hand-written backward passes, and per-example gradients under `jax.vmap`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jnet.gradcheck.compare import compiled
from jnet.gradcheck.report import VJPRow
from jnet.gradcheck.tolerances import Tolerances, error_scale, max_abs
from jnet.gradcheck.vjp import vjp_report
from jnet.layers.base import forward_with_state
from jnet.layers.checks import BackwardError
from jnet.network import apply
from jnet.trees import leaf_name

EXAMPLES = 4  # per-example gradients checked on the first few examples


def network_losses(net, loss, y, key, state):
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
    through_apply, pure = network_losses(net, loss, y, key, state)
    tolerances = {k: options.get(k) for k in ("rtol", "fd_tol", "fd_eps")}
    report = vjp_report(through_apply, (params, x), pure, (2,), options["probes"],
                        options["seed"], name, ("", "x"), True, tolerances)  # fmt: skip
    return report.rows, report.notes


def _bare(net, params, x, key, state) -> bool:
    """Whether the net's forward takes one example without its batch axis (as jax.vmap over
    unbatched examples shows it)."""

    def out(x):
        return forward_with_state(net, params, x, key=key, state=state)[0]

    try:
        one, batch = jax.eval_shape(out, x[0]), jax.eval_shape(out, x)
    except (ValueError, TypeError, IndexError) as e:
        # A combinator checks its children's backward while tracing its forward: a backward
        # that fails on the bare shapes is what the note reports, not the forward.
        return isinstance(e, BackwardError) or getattr(e, "in_backward", False)
    return one.shape == batch.shape[1:]


def _refuses_one(net, params, x, key, state) -> str | None:
    """The forward's own ValueError on a batch of one (batch_norm training on one value per
    channel), if it raises one; None when it runs. A backward's fault is not a refusal: it
    is left to the check to report."""
    one = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)  # not x[:1]: an eager slice compiles
    try:
        jax.eval_shape(lambda x: forward_with_state(net, params, x, key=key, state=state)[0], one)
    except ValueError as e:
        if isinstance(e, BackwardError) or getattr(e, "in_backward", False):
            return None
        return str(e).splitlines()[0][:200]
    return None


def per_example_rows(
    net, loss, params, x, y, key, state, name: str, tol: Tolerances
) -> tuple[list[VJPRow], list[str]]:
    """Per-example gradients, `jax.vmap(jax.grad(...))` through the hand-written backward
    passes over examples of batch size 1, against the same gradients example by example.

    Batches of one are the shapes every layer trains on, so a backward written for batches
    (`x.T @ dy`) is checked here like any other. Whether the backward also runs on bare
    examples (`(D,)`, no batch axis), as `jax.vmap` over unbatched examples shows them, is
    traced (not run) and noted: a backward that does not has no wrong gradient. Both sides
    use the hand-written passes, so a wrong first-order gradient shows in the other tables,
    not twice; this one is about batching.
    """
    if net.stateful and key is not None:
        return [], [
            f"{name}: per-example gradients not checked: a stateful net in training mode "
            "normalises with batch statistics, which couple the examples"
        ]
    if x.ndim == 0 or x.shape[0] < 1 or jnp.ndim(y) == 0:
        return [], [f"{name}: per-example gradients not checked: no batch axis"]
    if refusal := _refuses_one(net, params, x, key, state):
        return [], [f"{name}: per-example gradients not checked: the net refuses a batch of one "
                    f"({refusal})"]  # fmt: skip
    through_apply, _ = network_losses(net, loss, y, key, state)
    # A few examples show a batching fault as all would; sliced on the host (no eager op).
    x, y = np.asarray(x)[:EXAMPLES], np.asarray(y)[:EXAMPLES]
    n = x.shape[0]

    def split(key):  # inside the programs: an eager split and index each compile one
        return None if key is None else jax.random.split(key, n)

    with_x = jnp.issubdtype(x.dtype, jnp.floating)
    grad = jax.grad(through_apply, argnums=(0, 1) if with_x else 0)
    in_axes = (None, 0, 0, None if key is None else 0)
    per_example = jax.vmap(grad, in_axes=in_axes)
    keys = jax.eval_shape(split, key)
    notes = _bare_note(net, params, x, y, key, state, keys, per_example, name, with_x)

    def both(params, x, y, key):  # (under jax.vmap, example by example)
        keys = split(key)
        looped = [grad(params, x[i], y[i], None if key is None else keys[i]) for i in range(n)]
        return per_example(params, x, y, keys), jax.tree.map(lambda *a: jnp.stack(a), *looped)

    # One program for both sides (a loop of EXAMPLES calls unrolled beside the vmap: fewer
    # programs to compile is what a small check's time is made of).
    hand, ref = compiled(both, (params, x))(params, x[:, None], y[:, None], key)
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
    return rows, notes + [
        f"{name}: per-example gradients under jax.vmap (first {x.shape[0]} examples of batch "
        "size 1) compared with a loop over batches of one"
    ]


def _bare_note(net, params, x, y, key, state, keys, per_example, name, with_x) -> list[str]:
    """A note when the backward does not run under jax.vmap on bare examples (traced only)."""
    if not _bare(net, params, x, key, state):
        return []
    head = (f"{name}: per-example gradients: the backward does not run under jax.vmap on "
            f"bare examples of shape {tuple(x.shape[1:])} (checked on batches of one); ")
    try:
        got = jax.eval_shape(per_example, params, x, y, keys)
    except Exception as e:  # noqa: BLE001 - any error here is the backward's, reported as is
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        return [f"{head}{type(e).__name__}: {msg}"]
    want = [(leaf_name(p), np.shape(w)) for p, w in jax.tree_util.tree_flatten_with_path(params)[0]]
    want += [("x", tuple(x.shape[1:]))] if with_x else []
    for (where, shape), g in zip(want, jax.tree.leaves(got), strict=False):
        if tuple(g.shape[1:]) != tuple(shape):  # e.g. x.T @ dy on (D,) vectors: a scalar
            return [f"{head}it returns {where} of shape {tuple(g.shape[1:])} per example, "
                    f"expected {tuple(shape)}"]  # fmt: skip
    return []
