"""The registry's case names as test parameters, shared by the registry and layer tests."""

import pytest

from jnet.gradcheck.registry import CASES

# The fast path (`-m "not slow"`) runs one case per family; CI runs every case.
FAST = {
    "dense", "relu", "dropout", "softmax_cross_entropy[labels]", "sigmoid_binary_cross_entropy",
    "mean_squared_error", "mixed", "conv2d 3x3 SAME", "max_pool ties after relu", "avg_pool 2",
    "global_avg_pool", "batch_norm[inference] after conv2d", "residual conv2d-relu-conv2d",
    "concat conv2d 1x1 | conv2d 3x3 | max_pool", "rnn T=3 masked last", "lstm T=3 masked last",
    "gru T=1",
}  # fmt: skip
NAMES = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in CASES]
