"""benchmarks/transformer.py --quick as a separate process from the repository root."""

import pathlib

import pytest
from _scripts_support import run

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow  # compiles three GPT training loops (and imports torch when installed)
def test_transformer_benchmark_quick(tmp_path_factory):
    done = run("benchmarks/transformer.py", tmp_path_factory)  # shared with test_scripts.py
    md = done.out / "BENCHMARKS.md"
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for name in (
        "jnet (hand-written backward)",
        "jax.grad, naive attention",
        "jax.grad, dot_product_attention",
    ):
        assert name in out
    text = md.read_text()
    assert "<!-- BEGIN transformer-cpu -->" in text and "jnet <= 1.0x the fastest jax.grad" in text


@pytest.mark.slow  # compiles two GPT forwards
def test_reference_forward_matches_jnet_gpt():
    """The jax.grad rows compute jnet.gpt's function (float64: to rounding)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import transformer

    import jnet

    net = jnet.gpt(65, block_size=8, layers=2, heads=2, dim=16, bias=False)
    _, params = net.init(jax.random.key(0), (1, 8))
    params = jax.tree.map(lambda p: p + 0.1 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), params)
    x = jax.random.randint(jax.random.key(1), (3, 8), 0, 65)
    want = jax.jit(jnet.apply(net))(params, x)
    ref = transformer.to_reference(params, 2)
    for fused in (False, True):
        got = jax.jit(transformer.reference_forward(fused, 2))(ref, x)
        np.testing.assert_allclose(
            got, want, rtol=1e-5 if fused else 1e-10, atol=1e-6 if fused else 1e-12
        )


def test_flags_and_configs():
    import transformer

    args = transformer.parse_args(["--quick"])
    assert (args.steps, args.repeats, args.no_torch) == (2, 1, False)
    assert transformer.parse_args(["--no-torch", "--steps", "7"]).steps == 7
    cpu = transformer.CONFIGS["cpu"]
    assert (cpu["layers"], cpu["heads"], cpu["dim"], cpu["block"], cpu["batch"]) == (
        4,
        4,
        128,
        64,
        12,
    )
    with pytest.raises(SystemExit):
        transformer.parse_args(["--steps", "0"])
