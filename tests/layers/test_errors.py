"""Bad input raises a ValueError naming the layer or loss, the shapes and what was expected.

Shapes and dtypes are static, so the check runs in Python while tracing: the same error
comes out of `jax.jit`, never an XLA error.
"""

import re

import jax
import jax.numpy as jnp
import pytest

import jnet

DENSE = jnet.dense(3)
DENSE_PARAMS = {"w": jnp.ones((6, 3)), "b": jnp.zeros(3)}  # initialised for 6 features
MLP = jnet.serial(jnet.dense(4), jnet.relu(), jnet.dense(3))
MLP_PARAMS = (
    {"w": jnp.ones((6, 4)), "b": jnp.zeros(4)},
    (),
    {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)},
)
NESTED = jnet.serial(jnet.dense(4), jnet.serial(jnet.relu(), jnet.dense(3)))
NESTED_PARAMS = (MLP_PARAMS[0], ((), {"w": jnp.ones((5, 3)), "b": jnp.zeros(3)}))  # 5, not 4


def dense_apply(x):
    return jnet.apply(DENSE)(DENSE_PARAMS, x)


# name -> (function, its array arguments, regexes the message must match)
CASES = {
    "dense feature size": (
        dense_apply,
        (jnp.ones((4, 5)),),
        [r"^dense\(3\): ", r"shape \(4, 5\)", r"6 input features", r"expected \(\.\.\., 6\)"],
    ),
    "dense 0-d input": (
        dense_apply,
        (jnp.float64(1.0),),
        [r"^dense\(3\): ", r"shape \(\)", r"expected \(\.\.\., 6\)"],
    ),
    "dense uint8 input": (
        dense_apply,
        (jnp.ones((4, 6), jnp.uint8),),
        [r"^dense\(3\): ", r"floating-point", r"uint8", r"shape \(4, 6\)"],
    ),
    "serial feature size": (
        lambda x: jnet.apply(MLP)(MLP_PARAMS, x),
        (jnp.ones((4, 5)),),
        [r"^0:dense\(4\): ", r"shape \(4, 5\)", r"expected \(\.\.\., 6\)"],
    ),
    "serial deeper layer": (
        lambda x: jnet.apply(NESTED)(NESTED_PARAMS, x),
        (jnp.ones((4, 6)),),
        [r"^1/1:dense\(3\): ", r"shape \(4, 4\)", r"expected \(\.\.\., 5\)"],
    ),
    "serial uint8 input": (
        lambda x: jnet.apply(MLP)(MLP_PARAMS, x),
        (jnp.ones((4, 6), jnp.uint8),),
        [r"^0:dense\(4\): ", r"floating-point", r"uint8"],
    ),
    "value_and_grad feature size": (
        lambda x, y: jnet.value_and_grad(MLP, jnet.mean_squared_error)(MLP_PARAMS, x, y),
        (jnp.ones((4, 5)), jnp.ones((4, 3))),
        [r"^0:dense\(4\): ", r"shape \(4, 5\)", r"expected \(\.\.\., 6\)"],
    ),
    "flatten(3) on 2-d": (
        lambda x: jnet.flatten(3).forward((), x)[0],
        (jnp.ones((4, 6)),),
        [r"^flatten\(3\): ", r"shape \(4, 6\)", r"expected at least 3 axes"],
    ),
    "flatten on 1-d": (
        lambda x: jnet.flatten().forward((), x)[0],
        (jnp.ones(4),),
        [r"^flatten\(\): ", r"shape \(4,\)", r"expected at least 2 axes"],
    ),
    "relu int input": (
        lambda x: jnet.relu().forward((), x)[0],
        (jnp.ones((4, 6), jnp.int32),),
        [r"^relu\(\): ", r"floating-point", r"int32"],
    ),
    "softmax_cross_entropy float labels": (
        jnet.apply(jnet.softmax_cross_entropy),
        (jnp.ones((4, 3)), jnp.ones(4)),
        [r"^softmax_cross_entropy: ", r"float labels of shape \(4,\)", r"integer", r"\(4, 3\)"],
    ),
    "softmax_cross_entropy label batch": (
        jnet.apply(jnet.softmax_cross_entropy),
        (jnp.ones((4, 3)), jnp.ones(5, jnp.int32)),
        [r"^softmax_cross_entropy: ", r"\(5,\)", r"\(4, 3\)", r"expected labels of shape \(4,\)"]
        + [r"batch sizes differ: 4 outputs, 5 targets"],
    ),
    "softmax_cross_entropy one-hot batch": (
        jnet.apply(jnet.softmax_cross_entropy),
        (jnp.ones((4, 3)), jnp.ones((5, 3))),
        [r"^softmax_cross_entropy: ", r"\(5, 3\)", r"\(4, 3\)", r"batch sizes differ: 4 .*, 5"],
    ),
    "softmax_cross_entropy int logits": (
        jnet.apply(jnet.softmax_cross_entropy),
        (jnp.ones((4, 3), jnp.int32), jnp.ones(4, jnp.int32)),
        [r"^softmax_cross_entropy: logits must be .*floating-point", r"int32"],
    ),
    "sigmoid_binary_cross_entropy batch": (
        jnet.apply(jnet.sigmoid_binary_cross_entropy),
        (jnp.ones((4, 1)), jnp.ones(5)),
        [r"^sigmoid_binary_cross_entropy: ", r"\(5,\)", r"\(4, 1\)", r"batch sizes differ"],
    ),
    "sigmoid_binary_cross_entropy (N,) batch": (
        jnet.apply(jnet.sigmoid_binary_cross_entropy),
        (jnp.ones(4), jnp.ones((5, 1))),
        [r"^sigmoid_binary_cross_entropy: ", r"\(5, 1\)", r"\(4,\)", r"batch sizes differ"],
    ),
    "mean_squared_error batch": (
        jnet.apply(jnet.mean_squared_error),
        (jnp.ones((4, 2)), jnp.ones((5, 2))),
        [r"^mean_squared_error: ", r"\(5, 2\)", r"\(4, 2\)", r"batch sizes differ: 4 .*, 5"],
    ),
    "mean_squared_error same size, other shape": (
        jnet.apply(jnet.mean_squared_error),
        (jnp.ones((4, 6)), jnp.ones((4, 3, 2))),
        [r"^mean_squared_error: ", r"\(4, 3, 2\)", r"\(4, 6\)"],
    ),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_a_value_error_naming_it(case, jit):
    fn, args, patterns = CASES[case]
    with pytest.raises(ValueError) as e:
        (jax.jit(fn) if jit else fn)(*args)
    assert type(e.value) in (ValueError, jnet.LayerError)  # not an XLA error, nor a subclass
    for pattern in patterns:
        assert re.search(pattern, str(e.value)), (pattern, str(e.value))


def test_error_under_jax_grad_too():
    with pytest.raises(ValueError, match=r"^0:dense\(4\)"):
        jax.jit(jax.grad(lambda p, x: jnet.apply(MLP)(p, x).sum()))(MLP_PARAMS, jnp.ones((2, 5)))


def test_dense_init_rejects_a_0d_input_shape():
    with pytest.raises(ValueError, match=r"^dense\(3\): input shape must be \(\.\.\., features\)"):
        jnet.dense(3).init(jax.random.key(0), ())


def test_serial_init_names_the_layer():
    with pytest.raises(ValueError, match=r"^1:flatten\(3\): input has shape \(4, 6\)"):
        jnet.serial(jnet.relu(), jnet.flatten(3)).init(jax.random.key(0), (4, 6))


def test_serial_rejects_params_for_another_network():
    name = r"^serial\(dense\(4\), relu\(\), dense\(3\)\)"
    with pytest.raises(ValueError, match=name + r": got params for 2 layers .* has 3"):
        MLP.forward(MLP_PARAMS[:2], jnp.ones((4, 6)))


def test_flatten_rejects_ndim_below_1():
    with pytest.raises(ValueError, match=r"^flatten: ndim .* >= 1; got 0"):
        jnet.flatten(0)


@pytest.mark.slow
def test_good_inputs_still_pass():
    # The same functions on well-formed inputs: the errors above are about the input alone.
    assert dense_apply(jnp.ones((4, 6))).shape == (4, 3)
    assert dense_apply(jnp.ones(6)).shape == (3,)
    assert jnet.flatten(2).forward((), jnp.ones((4, 6)))[0].shape == (24,)
    assert (
        jnet.apply(jnet.softmax_cross_entropy)(jnp.ones((4, 3)), jnp.ones(4, jnp.int32)).shape == ()
    )
    assert jnet.apply(jnet.sigmoid_binary_cross_entropy)(jnp.ones((4, 1)), jnp.ones(4)).shape == ()
    assert jnet.apply(jnet.mean_squared_error)(jnp.ones((4, 1)), jnp.ones(4)).shape == ()


def test_gradcheck_cli_names_the_known_cases(capsys):
    from jnet.gradcheck.__main__ import main
    from jnet.gradcheck.registry import CASES

    with pytest.raises(SystemExit) as e:
        main(["dense", "nosuchcase"])
    assert e.value.code == 2  # a usage error, not a KeyError traceback
    err = capsys.readouterr().err
    assert "error: unknown case(s) 'nosuchcase'; known cases: 'dense', 'relu'" in err
    assert all(repr(name) in err for name in CASES)
