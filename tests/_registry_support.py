"""The registry's case names as test parameters, shared by the registry and layer tests.

The fast path (`pytest -m "not slow"`) runs a few cases of each parametrized test and CI runs
every case. Compiling dominates the run time, so the fast sets are small: each family is in
at least one of them, and its own layer tests (tests/layers/) cover it in the fast path too.
"""

from _marks import fast_at

from jnet.gradcheck.registry import CASES

# check_gradients in float64 (jax.grad and finite differences): dense (through a loss) and
# max pooling with ties, the backward hardest to get right (the convolution's is checked
# against jax.grad in tests/layers/test_conv.py's fast path, here in CI's full run).
CHECKED = {"dense", "max_pool ties after relu"}
# Layer-level VJPs against jax.vjp, the cheap cases; pooling, residual blocks and recurrent
# layers (and the transformer's: tests/layers/test_transformer_layers.py, test_attention.py)
# have their own checks against jax.vjp or jax.grad in tests/layers/'s fast path.
FAMILIES = {
    "dense", "relu", "softmax_cross_entropy[labels]", "conv2d 3x3 SAME",
    "batch_norm[inference] after conv2d",
}  # fmt: skip
# The checks that repeat the above through another path (float32, apply, jit, vmap).
SMOKE = {"dense"}


def names(fast: set[str]) -> list:
    """Every registry case, those outside `fast` marked slow."""
    unknown = fast - CASES.keys()
    assert not unknown, f"not in the registry: {sorted(unknown)}"
    return fast_at(list(CASES), {i for i, n in enumerate(CASES) if n in fast})


NAMES = names(FAMILIES)
