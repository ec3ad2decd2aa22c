"""fit's one return type, FitResult(params, model_state, history), for every network."""

import jax
import pytest
from _train_support import blobs

import jnet


@pytest.mark.slow  # the fast path's budget (CI runs it)
def test_fit_returns_params_model_state_and_history_for_every_network():
    x, y = blobs(32, 4)
    kw = dict(epochs=2, batch_size=16, key=jax.random.key(0), progress=False)
    plain = jnet.fit(jnet.serial(jnet.dense(3)), jnet.softmax_cross_entropy, 0.1, x, y, **kw)
    assert isinstance(plain, jnet.FitResult) and plain.model_state == ()
    assert plain.history["epoch"] == [1, 2] and plain.params[0]["w"].shape == (4, 3)
    net = jnet.serial(jnet.dense(3), jnet.batch_norm())
    result = jnet.fit(net, jnet.softmax_cross_entropy, 0.1, x, y, **kw)
    params, model_state, history = result
    assert jax.tree.leaves(model_state) and history["epoch"] == [1, 2]
    # The old two-way unpacking, `params, history = jnet.fit(...)`, cannot pass silently.
    with pytest.raises(ValueError, match="too many values to unpack"):
        params, history = result
