"""Smoke tests of benchmarks/cnn.py and resnet.py at toy sizes (no timing checks)."""

import re

import _scripts_support as scripts
import numpy as np
import pytest


@pytest.mark.slow
def test_resnet_rows_start_alike_and_end_on_the_same_losses(tmp_path_factory):
    """Read from `python benchmarks/resnet.py --steps 2 ...` as users run it (a fresh process,
    tests/_scripts_support.py): its rows, probes and the losses of both steps."""
    done = scripts.run("benchmarks/resnet.py", tmp_path_factory)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    rows = re.findall(r"^(jnet \(hand-written, |jax\.grad reference \()(\w+)\) ", out, re.M)
    assert [r[0] for r in rows] == ["jnet (hand-written, ", "jax.grad reference ("]
    assert {r[1] for r in rows} <= {"xla", "matmul"}  # each picked by a probe of both lowerings
    assert out.count("probe: jnet [") == 2 and out.count("probe: reference [") == 2
    # Same init, statistics and batches: hand-written and autodiff agree step by step.
    losses = re.search(r"same losses \(first, last\): jnet (\S+) (\S+), reference (\S+) (\S+)$",
                       out, re.M)  # fmt: skip
    assert losses, out
    jnet_losses, ref_losses = np.array(losses.groups(), float).reshape(2, 2)
    np.testing.assert_allclose(jnet_losses, ref_losses, rtol=1e-4)
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
