"""jnet.summary: one row a layer, nested serials indented, totals that count each parameter once."""

import jax.numpy as jnp

import jnet
from jnet.summary import summary_rows


def test_the_tutorial_mlp_has_407050_parameters():
    text = jnet.summary(jnet.mlp([512, 10]), (1, 784))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "output", "shape", "params", "bytes"]
    assert lines[2].split()[:4] == ["0:dense(512)", "(1,", "512)", "401,920"]
    assert lines[-1] == "total: 407,050 parameters (3.3 MB)"  # float64 under the tests' x64


def test_nested_serials_are_indented_and_addressed():
    net = jnet.serial(jnet.flatten(), jnet.serial(jnet.dense(8), jnet.tanh()), jnet.dense(3))
    rows = summary_rows(net, (2, 2, 4))
    assert [(r.address, r.depth, r.output_shape, r.params) for r in rows] == [
        ("0:flatten()", 0, (2, 8), 0),
        ("1:serial(dense(8), tanh())", 0, (2, 8), 72),
        ("1/0:dense(8)", 1, (2, 8), 72),
        ("1/1:tanh()", 1, (2, 8), 0),
        ("2:dense(3)", 0, (2, 3), 27),
    ]
    text = jnet.summary(net, (2, 2, 4))
    assert "\n  1/0:dense(8)" in text
    assert text.endswith("total: 99 parameters (792 B)")  # counted once; float64


def test_a_residuals_children_each_get_the_blocks_input():
    branch = jnet.serial(jnet.conv2d(8, 3, strides=2), jnet.relu())
    block = jnet.residual(branch, projection=jnet.conv2d(8, 1, strides=2))
    rows = summary_rows(jnet.serial(jnet.conv2d(4, 3), block), (1, 8, 8, 2))
    got = {r.address.split(":")[0]: (r.output_shape, r.params) for r in rows}
    # The projection reads the block's 4-channel input (4 * 8 + 8), not the branch's output.
    assert got["1/1"] == ((1, 4, 4, 8), 40) and got["1/0/0"] == ((1, 4, 4, 8), 296)
    assert got["1"] == ((1, 4, 4, 8), 336)


def test_the_wiring_is_what_decides_each_childs_input():
    chain = jnet.serial(jnet.dense(8), jnet.dense(3))
    fan = jnet.concat(jnet.dense(8), jnet.dense(3))
    assert chain.wiring is not None and fan.wiring is not None
    assert [r.params for r in summary_rows(chain, (2, 4))] == [40, 27]  # 4 -> 8 -> 3
    # The same children as siblings: the second one sees the input (4 -> 3).
    assert [r.params for r in summary_rows(jnet.serial(fan), (2, 4))] == [55, 40, 15]


def test_summary_walks_into_a_gpt_with_token_ids():
    net = jnet.gpt(11, block_size=8, layers=2, heads=2, dim=8)
    rows = summary_rows(net, (2, 5))
    got = {r.address: (r.output_shape, r.params) for r in rows}
    assert got["0:embedding(11, 8)"] == ((2, 5, 8), 88)
    assert got["3/1/0/1:dense(4D)"] == ((2, 5, 32), 8 * 32 + 32)
    assert got["4/0/0/0:layer_norm()"] == ((2, 5, 8), 16)
    assert got["4/0/0/1:self_attention(2)"] == ((2, 5, 8), 8 * 24 + 24 + 64 + 8)
    assert got["6:dense(11)"] == ((2, 5, 11), 88)  # the tied head is shown the shared matrix
    text = jnet.summary(net, (2, 5))
    # ... and the total counts it once: 88 + 64 + 2 * 872 + 16 (not + 88 again).
    assert text.splitlines()[-1].startswith("total: 1,912 parameters")


def test_bytes_follow_the_dtype():
    rows = summary_rows(jnet.dense(4, w_init=lambda k, s, d=jnp.float32: jnp.ones(s, d)), (1, 3))
    assert rows[0].params == 16 and rows[0].bytes == 12 * 4 + 4 * 8  # float32 w, float64 b


def test_repr_shows_the_name():
    assert repr(jnet.dense(512)) == "Layer(dense(512))"
    assert repr(jnet.leaky_relu(0.1)) == "Layer(leaky_relu(0.1))"
    assert repr(jnet.dropout(0.5)) == "Layer(dropout(0.5))"
    mine = jnet.Layer(lambda k, s: (s, ()), lambda p, x, *, key=None: (x, None),
                      lambda p, c, dy: ((), dy), name="mine")  # fmt: skip
    assert repr(mine) == "Layer(mine)"
    assert jnet.Layer(*mine[:3]).name == "layer"


def test_nanogpts_cpu_configuration_has_its_parameter_count():
    # nanoGPT's shakespeare_char CPU run prints "number of parameters: 0.80M": every
    # parameter but the position table (its get_num_params), the tied matrix counted once.
    net = jnet.gpt(65, block_size=64, layers=4, heads=4, dim=128, bias=False)
    rows = summary_rows(net, (1, 64))
    wpe = next(r.params for r in rows if r.name == "positional_embedding(64)")
    total = jnet.summary(net, (1, 64)).splitlines()[-1]
    assert total.startswith("total: 804,096 parameters") and wpe == 64 * 128
    assert round((804_096 - wpe) / 1e6, 2) == 0.80
