"""Smoke tests of benchmarks/cnn.py and resnet.py at toy sizes (no timing checks)."""

import numpy as np
import pytest


@pytest.mark.slow
def test_resnet_rows_start_alike_and_end_on_the_same_losses(capsys):
    import resnet

    result = resnet.main(["--steps", "2", "--repeats", "1", "--batch", "8", "--no-torch"])
    out = capsys.readouterr().out
    (jnet_row, ref_row) = result["rows"]
    assert jnet_row.startswith("jnet (hand-written") and ref_row.startswith("jax.grad reference")
    assert set(result["lowerings"]) == {"jnet", "reference"}  # each probed in both lowerings
    assert set(result["lowerings"].values()) <= {"xla", "matmul"}
    assert out.count("probe: jnet [") == 2 and out.count("probe: reference [") == 2
    # Same init, statistics and batches: hand-written and autodiff agree step by step.
    np.testing.assert_allclose(*result["losses"].values(), rtol=1e-4)
    assert "vs ref" in out and "1.00" in out


def test_resnet_network_is_a_stateful_block_stack():
    import jax
    import resnet

    from jnet.layers import init_with_state

    net = resnet.network()
    out = []  # the output shape, from a trace of init (eval_shape: nothing runs or compiles)
    jax.eval_shape(lambda k: out.append(init_with_state(net, k, (2, 28, 28, 1))), jax.random.key(0))
    assert net.stateful and tuple(out[0][0]) == (2, 10)
    names = [c.name for c in net.children]
    assert sum(n.startswith("residual(") for n in names) == len(resnet.BLOCKS)
    assert "projection=conv2d(32, 1, strides=2" in names[7]  # the block that halves the size
