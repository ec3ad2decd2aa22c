"""self_attention: against a naive forward's jax.grad (float64 and float32), both paths,
masks and fully masked rows, dropout, finite differences, memory, PyTorch, bad input."""

import pathlib

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from _marks import fast_at
from _scripts_support import run

import jnet
from jnet.gradcheck.attention_cases import naive_attention
from jnet.layers import attention

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Padding at the end, padding at the front (causal: its first rows see no real key), gaps,
# an example that is all padding.
MASK = jnp.asarray(
    [[1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0]],
    bool,
)  # fmt: skip


def randn(shape, seed=0, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def random_params(d, bias=True, seed=3, dtype=jnp.float64):
    shapes = {"w_qkv": (d, 3 * d), "w_out": (d, d)}
    if bias:
        shapes |= {"b_qkv": (3 * d,), "b_out": (d,)}
    return {k: 0.5 * randn(s, seed + i, dtype) for i, (k, s) in enumerate(sorted(shapes.items()))}


def rel_err(got, want):
    got, want = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got) == len(want)
    return max(
        float(jnp.max(jnp.abs(g - w)) / max(float(jnp.max(jnp.abs(w))), 1e-300))
        for g, w in zip(got, want, strict=True)
    )


def layer_vjp(layer, params, x, mask, dy):
    """`(y, dparams, dx)` through jnet.apply (the hand-written backward), jitted."""
    f = jnet.apply(layer)
    run = f if mask is None else lambda p, x: f(p, (x, mask))[0]

    @jax.jit
    def go(params, x, dy):
        y, vjp = jax.vjp(run, params, x)
        return (y, *vjp(dy))

    return go(params, x, dy)


def naive_vjp(params, x, mask, dy, heads, causal):
    @jax.jit
    def go(params, x, dy):
        y, vjp = jax.vjp(
            lambda p, x: naive_attention(p, x, heads, causal=causal, mask=mask), params, x
        )
        return (y, *vjp(dy))

    return go(params, x, dy)


# (causal, bias, heads, T, masked, block_size): block_size None is the whole-matrix path
# at these T; an int forces blocks (3 and 4 do not divide T = 7).
CONFIGS = [
    (True, True, 2, 7, False, None),
    (True, True, 2, 7, True, 3),
    (False, False, 1, 7, True, None),
    (False, True, 2, 7, False, 3),
    (True, True, 2, 1, False, None),
    (True, False, 2, 1, True, 1),
    (False, True, 2, 7, True, 4),
    (True, False, 4, 7, True, None),
    (True, True, 2, 7, False, 7),
]


@pytest.mark.parametrize(
    "causal, bias, heads, t, masked, block", fast_at(CONFIGS, {1}, unpack=True)
)
def test_matches_jax_grad_of_naive_forward_float64(causal, bias, heads, t, masked, block):
    n, d = 4, 8
    layer = jnet.self_attention(heads, causal=causal, bias=bias, block_size=block)
    params, x, dy = random_params(d, bias), randn((n, t, d), 1), randn((n, t, d), 2)
    mask = MASK[:, -t:] if masked else None
    got = layer_vjp(layer, params, x, mask, dy)
    want = naive_vjp(params, x, mask, dy, heads, causal)
    assert rel_err(got, want) < 1e-12


@pytest.mark.slow  # the fast path's masked blocked case above has such rows too
@pytest.mark.parametrize("block", [None, 3])
def test_fully_masked_rows_give_zeros_zero_gradient_and_no_nan(block):
    """Left padding under causal attention leaves the first rows with no real key, and the
    last example is all padding: their outputs and input gradients are zeros, nothing is
    NaN, and the all-padding example adds nothing to the parameter gradients."""
    layer = jnet.self_attention(2, block_size=block)
    params, x, dy = random_params(8), randn((4, 7, 8), 1), randn((4, 7, 8), 2)
    y, dparams, dx = layer_vjp(layer, params, x, MASK, dy)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves((y, dparams, dx)))
    padded = ~MASK[..., None]
    assert float(jnp.max(jnp.abs(jnp.where(padded, y, 0)))) == 0.0
    assert float(jnp.max(jnp.abs(jnp.where(padded, dx, 0)))) == 0.0
    _, without, _ = layer_vjp(layer, params, x[:3], MASK[:3], dy[:3])
    assert rel_err(dparams, without) < 1e-13


@pytest.mark.slow
@pytest.mark.parametrize("block", [None, 3])
def test_float32_agrees_with_float64_reference(block):
    layer = jnet.self_attention(2, block_size=block)
    f64 = random_params(8), randn((4, 7, 8), 1), randn((4, 7, 8), 2)
    f32 = jax.tree.map(lambda a: a.astype(jnp.float32), f64)
    got = layer_vjp(layer, f32[0], f32[1], MASK, f32[2])
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(got))
    want = naive_vjp(*f64[:2], MASK, f64[2], 2, True)
    assert rel_err(got, want) < 1e-5


@pytest.mark.slow
def test_finite_differences_blocked_masked():
    layer = jnet.self_attention(2, block_size=3)
    f = jnet.apply(layer)
    mask = MASK[:2]
    jax.test_util.check_grads(
        jax.jit(lambda p, x: f(p, (x, mask))[0]), (random_params(4), randn((2, 7, 4), 1)), order=1,
        modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-7,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("block", [None, 3])
def test_dropout_backward_is_the_forwards_gradient_with_the_same_key(block):
    layer = jnet.self_attention(2, dropout=0.3, block_size=block)
    params, x, dy = random_params(8), randn((2, 7, 8), 1), randn((2, 7, 8), 2)
    key = jax.random.key(5)

    @jax.jit
    def both(params, x, dy):
        y, cache = layer.forward(params, x, key=key)
        y_ref, vjp = jax.vjp(lambda p, x: layer.forward(p, x, key=key)[0], params, x)
        return (y, *layer.backward(params, cache, dy)), (y_ref, *vjp(dy))

    got, want = both(params, x, dy)
    assert rel_err(got, want) < 1e-12
    plain = naive_attention(params, x, 2)
    assert float(jnp.max(jnp.abs(got[0] - plain))) > 1e-3  # dropout did something
    # Without a key (inference) dropout is off.
    assert rel_err(jax.jit(layer.forward)(params, x)[0], plain) < 1e-12


def test_dropout_zero_draws_nothing():
    params, x = random_params(8), randn((2, 7, 8), 1)
    for block in (None, 3):
        layer = jnet.self_attention(2, block_size=block)
        with_key = jax.make_jaxpr(
            lambda p, x, layer=layer: layer.forward(p, x, key=jax.random.key(0))[0]
        )
        assert "random_bits" not in str(with_key(params, x))
        assert "threefry" not in str(with_key(params, x))
    drop = jnet.self_attention(2, dropout=0.1)
    traced = jax.make_jaxpr(lambda p, x: drop.forward(p, x, key=jax.random.key(0))[0])
    assert "random_bits" in str(traced(params, x))  # the probe can see a draw


def test_path_switches_to_blocks_past_simple_max_t():
    layer = jnet.self_attention(2)
    params = random_params(8, dtype=jnp.float32)
    longest = attention.simple_max_t()
    for t, loops in ((longest, False), (longest + 1, True)):
        x = jnp.zeros((1, t, 8), jnp.float32)
        jaxpr = str(jax.make_jaxpr(lambda p, x: layer.forward(p, x)[0])(params, x))
        assert ("while" in jaxpr or "scan" in jaxpr) == loops


def _temp_bytes(forward, t, d=32, heads=2):
    params = random_params(d, dtype=jnp.float32)
    x = jnp.zeros((1, t, d), jnp.float32)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(forward(p, x) ** 2), argnums=(0, 1)))
    return grad.lower(params, x).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.slow  # compiles three gradients; deterministic, so not a timed test
def test_gradient_memory_is_linear_in_t_and_far_below_naive():
    """XLA's own accounting of a whole gradient (deterministic: compilation only)."""
    f = jnet.apply(jnet.self_attention(2))
    naive = lambda p, x: naive_attention(p, x, 2)  # noqa: E731
    small, large = _temp_bytes(f, 512), _temp_bytes(f, 1024)
    assert large < _temp_bytes(naive, 1024) / 4
    assert 1.7 < large / small < 2.3


@pytest.mark.slow
def test_pair_input_returns_the_pair_and_stacks_in_serial():
    net = jnet.serial(jnet.self_attention(2), jnet.self_attention(2, causal=False))
    x = randn((4, 7, 8), 1)
    _, params = net.init(jax.random.key(0), ((4, 7, 8), (4, 7)))
    y, m = jnet.apply(net)(params, (x, MASK))
    assert m is MASK and y.shape == x.shape
    dx = jax.grad(lambda x: jnp.sum(jnet.apply(net)(params, (x, MASK))[0] ** 2))(x)
    assert float(jnp.max(jnp.abs(jnp.where(MASK[..., None], 0, dx)))) == 0.0


def test_params_layout_and_init():
    out, params = jnet.self_attention(4).init(jax.random.key(0), (2, 5, 8))
    assert out == (2, 5, 8)
    assert {k: v.shape for k, v in params.items()} == {
        "w_qkv": (8, 24), "b_qkv": (24,), "w_out": (8, 8), "b_out": (8,)
    }  # fmt: skip
    _, params = jnet.self_attention(4, bias=False).init(jax.random.key(0), (2, 5, 8))
    assert set(params) == {"w_qkv", "w_out"}


@pytest.mark.slow
def test_matches_nanogpt_causal_self_attention():
    """nanoGPT's CausalSelfAttention (inline, dropout 0) with its weights loaded as
    w_qkv = c_attn.weight.T, w_out = c_proj.weight.T: the same output and gradients."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    class CausalSelfAttention(nn.Module):
        def __init__(self, n_embd, n_head):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)
            self.n_head, self.n_embd = n_head, n_embd

        def forward(self, x):
            b, t, c = x.size()
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            q, k, v = (a.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                       for a in (q, k, v))  # fmt: skip
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))

    torch.manual_seed(0)
    module = CausalSelfAttention(16, 4).double()
    xt = torch.randn(3, 9, 16, dtype=torch.float64, requires_grad=True)
    yt = module(xt)
    (yt**2).sum().backward()
    params = {
        "w_qkv": jnp.asarray(module.c_attn.weight.detach().numpy().T),
        "b_qkv": jnp.asarray(module.c_attn.bias.detach().numpy()),
        "w_out": jnp.asarray(module.c_proj.weight.detach().numpy().T),
        "b_out": jnp.asarray(module.c_proj.bias.detach().numpy()),
    }
    x = jnp.asarray(xt.detach().numpy())
    for block in (None, 4):
        f = jnet.apply(jnet.self_attention(4, block_size=block))
        y = f(params, x)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        loss = lambda p, x, f=f: jnp.sum(f(p, x) ** 2)  # noqa: E731
        dparams, dx = jax.grad(loss, argnums=(0, 1))(params, x)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            dparams["w_qkv"], module.c_attn.weight.grad.numpy().T, rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize(
    "make, inp, match",
    [
        (lambda: jnet.self_attention(3), (2, 5, 8), "do not split into 3 heads"),
        (lambda: jnet.self_attention(0), None, "heads must be an int >= 1"),
        (lambda: jnet.self_attention(2, dropout=1.0), None, "dropout must be in"),
        (lambda: jnet.self_attention(2, causal=1), None, "causal must be True or False"),
        (lambda: jnet.self_attention(2), (2, 8), "expected 3 axes"),
    ],
)
def test_bad_arguments_and_shapes_name_the_problem(make, inp, match):
    with pytest.raises(ValueError, match=match):
        make().init(jax.random.key(0), inp)


def test_bad_inputs_at_forward_name_the_problem():
    layer = jnet.self_attention(2)
    params = random_params(8)
    with pytest.raises(ValueError, match=r"mask has shape \(4, 6\); expected \(4, 7\)"):
        layer.forward(params, (randn((4, 7, 8)), MASK[:, :6]))
    with pytest.raises(ValueError, match="floating-point"):
        layer.forward(params, jnp.zeros((4, 7, 8), jnp.int32))
    with pytest.raises(ValueError, match=r"needs .*w_qkv \(6, 18\)"):
        layer.forward(params, randn((4, 7, 6)))
    with pytest.raises(ValueError, match="params must be a dict"):
        layer.forward(random_params(8, bias=False), randn((4, 7, 8)))


@pytest.mark.slow
def test_memory_benchmark_runs_as_a_script(tmp_path_factory):
    out = run("benchmarks/attention_memory.py", tmp_path_factory)  # shared with test_scripts.py
    assert out.returncode == 0, out.stderr
    assert "| 256 |" in out.stdout and "jnet / naive" in out.stdout
