"""Which parametrized cases run on the fast path (`pytest -m "not slow"`); CI runs them all."""

from collections.abc import Collection, Sequence

import pytest


def fast_at(
    values: Sequence, fast: Collection[int], *, ids: Sequence[str] | None = None, unpack=False
) -> list:
    """`values` as pytest parameters, those whose index is not in `fast` marked slow.

    `unpack`: each value is a tuple of several arguments (`parametrize("a, b", ...)`).
    """
    assert all(0 <= i < len(values) for i in fast), f"no such case among {len(values)}"
    return [
        pytest.param(
            *(v if unpack else (v,)),
            marks=() if i in fast else pytest.mark.slow,
            id=None if ids is None else ids[i],
        )
        for i, v in enumerate(values)
    ]
