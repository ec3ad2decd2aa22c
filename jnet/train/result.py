"""What `fit` returns: one type for every network."""

from __future__ import annotations

from typing import Any, NamedTuple

from jnet.layers import Params, State


class FitResult(NamedTuple):
    """`fit`'s result, the same three fields for every network.

    Attributes:
      params: the trained parameters.
      model_state: the network's state (e.g. batch norm's running statistics); `()` for a
        stateless network.
      history: per-epoch lists: epoch, loss, accuracy, each metric, their `val_` twins with
        validation, and seconds.

    Unpack all three (`params, model_state, history = jnet.fit(...)`) or read the fields
    (`jnet.fit(...).params`). Code written for the old two-way result, `params, history =
    jnet.fit(...)`, raises `ValueError: too many values to unpack (expected 2)`: Python
    refuses it before anything can go silently wrong.
    """

    params: Params
    model_state: State
    history: dict[str, list[Any]]
