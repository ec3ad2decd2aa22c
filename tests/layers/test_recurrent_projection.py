"""Where the recurrent layers' input projection `x_t w_x + b` runs: inside the scan on a CPU,
as one matmul before it elsewhere (`recurrent_cells.hoist_input_projection`); where the backward
sums the weight gradients: in its reverse scan for the GRU on a CPU, after it otherwise
(`recurrent_cells.accumulate_in_scan`). Every placement that runs anywhere is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _marks import fast_at

import jnet
from jnet.gradcheck import assert_trees_close
from jnet.layers import recurrent

N, T, D, H = 3, 6, 4, 5
KINDS = {"rnn": jnet.rnn, "lstm": jnet.lstm, "gru": jnet.gru}
MASK = jnp.asarray([[1, 1, 1, 0, 0, 0], [1, 0, 1, 1, 0, 1], [0, 0, 0, 0, 0, 0]], bool)


def randn(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def random_params(layer, seed=3):
    shapes = jax.eval_shape(lambda k: layer.init(k, (N, T, D))[1], jax.random.key(0))
    leaves, treedef = jax.tree.flatten(shapes)
    return treedef.unflatten([0.5 * randn(s.shape, seed + i) for i, s in enumerate(leaves)])


def dots_in_and_before_the_scan(layer, params, x):
    """(dot_generals inside the forward's scan body, dot_generals outside it)."""
    eqns = jax.make_jaxpr(lambda p, x: layer.forward(p, x)[0])(params, x).jaxpr.eqns
    (scan,) = [e for e in eqns if e.primitive.name == "scan"]
    inside = [e for e in scan.params["jaxpr"].jaxpr.eqns if e.primitive.name == "dot_general"]
    return len(inside), sum(e.primitive.name == "dot_general" for e in eqns)


@pytest.mark.parametrize("hoist", [False, True], ids=["cpu", "hoisted"])
def test_the_projection_runs_in_the_scan_on_a_cpu_and_before_it_when_hoisted(hoist, monkeypatch):
    if hoist:
        monkeypatch.setattr(recurrent, "hoist_input_projection", lambda: True)
    else:
        assert jax.default_backend() == "cpu" and not recurrent.hoist_input_projection()
    layer = jnet.lstm(H)
    inside, before = dots_in_and_before_the_scan(layer, random_params(layer), randn((N, T, D), 1))
    # The scan body always holds h w_h; x_t w_x joins it unless hoisted out.
    assert (inside, before) == ((1, 1) if hoist else (2, 0))


def dots_in_the_backward_scan(layer, params, x):
    def backward(p, x):
        y, cache = layer.forward(p, x)
        return layer.backward(p, cache, jnp.ones_like(y))

    eqns = jax.make_jaxpr(backward)(params, x).jaxpr.eqns
    (scan,) = [e for e in eqns if e.primitive.name == "scan" and e.params["reverse"]]
    return sum(e.primitive.name == "dot_general" for e in scan.params["jaxpr"].jaxpr.eqns)


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_gru_sums_its_weight_gradients_in_the_reverse_scan_on_a_cpu(kind):
    assert jax.default_backend() == "cpu"
    layer = KINDS[kind](H)
    dots = dots_in_the_backward_scan(layer, random_params(layer), randn((N, T, D), 1))
    # dh w_h^T always; the GRU adds h^T du, x_t^T da and da w_x^T there.
    assert dots == (4 if kind == "gru" else 1)


# (hoisted, summed in the scan): the CPU's two (summed for the GRU only), the other devices',
# and the CPU's projection with the weight gradients summed for every cell.
PLACEMENTS = [(False, False), (False, True), (True, False)]


@pytest.mark.parametrize("kind", fast_at(list(KINDS), set()))
def test_every_placement_gives_the_same_exact_gradients(kind, monkeypatch):
    x = randn((N, T, D), 1)
    out = {}
    for hoist, summed in PLACEMENTS:
        monkeypatch.setattr(recurrent, "hoist_input_projection", lambda hoist=hoist: hoist)
        monkeypatch.setattr(recurrent, "accumulate_in_scan", lambda cell, s=summed: s)

        @jax.jit
        def run(x):
            res = []
            for seq in (True, False):
                layer = KINDS[kind](H, return_sequences=seq)
                params = random_params(layer)
                dy = randn((N, T, H) if seq else (N, H), 2)
                for inp in (x, (x, MASK)):
                    y, cache = layer.forward(params, inp)
                    got = layer.backward(params, cache, (dy, None) if isinstance(y, tuple) else dy)
                    got = (got[0], got[1][0] if isinstance(inp, tuple) else got[1])

                    def f(p, x0, inp=inp, layer=layer):
                        y = layer.forward(p, (x0, inp[1]) if isinstance(inp, tuple) else x0)[0]
                        return y[0] if isinstance(y, tuple) else y

                    _, vjp = jax.vjp(f, params, x)
                    res.append((y[0] if isinstance(y, tuple) else y, got, vjp(dy)))
            return res

        out[hoist, summed] = run(x)
        for _, got, want in out[hoist, summed]:
            assert_trees_close(got, want, rtol=1e-10, atol=1e-14)
    first = out[PLACEMENTS[0]]
    for placement in PLACEMENTS[1:]:
        for (y0, g0, _), (y1, g1, _) in zip(first, out[placement], strict=True):
            assert_trees_close((y0, g0), (y1, g1), rtol=1e-12, atol=1e-14)
