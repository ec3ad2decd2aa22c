"""What `fit` does when a run diverges: replay to the last finite state and say where."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from jnet.train.history import record
from jnet.train.state import DivergenceError, TrainState
from jnet.trees import leaf_name


def learning_rate(optimizer: Any, opt_state: Any) -> str:
    """`"learning rate 0.1"` when it can be read (a number, or optax.inject_hyperparams)."""
    if isinstance(optimizer, float | int):
        return f"learning rate {optimizer:g}"
    try:
        lr = optax.tree_utils.tree_get(opt_state, "learning_rate")
        return f"learning rate {float(lr):g}"
    except Exception:  # not an inject_hyperparams optimizer: the rate is not in the state
        return "learning rate unknown (wrap the optimizer in optax.inject_hyperparams to show it)"


def _bad_opt_leaf(state: TrainState, finite_leaves: np.ndarray) -> str | None:
    if bool(np.all(finite_leaves)):
        return None
    leaves = jax.tree_util.tree_leaves_with_path(state.opt_state)
    return leaf_name(leaves[int(np.argmin(finite_leaves))][0], empty="opt_state")


def diverged(
    replay: Callable[[int, int], TrainState],
    starts: list[TrainState],
    call_end: int,
    steps: int,
    bad: tuple[int, np.ndarray],
    metrics: dict,
    done: int,
    history: dict,
    lr: str,
    seconds: float,
) -> None:
    """Replays up to the last finite state and raises DivergenceError with it.

    `starts` holds the states the last two calls began with, newest last, and
    `replay(i, stop)` reruns the call that began with `starts[i]` up to global step `stop`:
    when the newest call began on the bad state itself, the previous call is replayed.
    `call_end` is the global step the newest call would have ended at; `steps` the steps
    an epoch.
    """
    bad_step, finite_leaves = int(bad[0]), np.asarray(bad[1])
    # A bad step inside the call is a non-finite loss or optimizer state; one at the call's
    # end means every loss was finite but the call's last update left non-finite parameters.
    in_update = bad_step == call_end
    seen = bad_step - 1 if in_update else bad_step
    epoch = seen // steps + 1  # 1-based epoch of the whole run
    which = len(starts) - 1
    if bad_step - 1 < int(starts[which].step) and which > 0:
        which -= 1
    last_good = replay(which, max(bad_step - 1, int(starts[which].step)))
    record(history, metrics, done, max(epoch - 1 - done, 0), seconds)  # epochs before the bad one
    where = f"epoch {epoch}, step {seen % steps + 1} of {steps} (global step {seen})"
    opt_leaf = None if in_update else _bad_opt_leaf(last_good, finite_leaves)
    if in_update:
        what = f"the update of {where} made the parameters NaN or inf"
    elif opt_leaf is not None:
        what = f"the update of {where} made the optimizer state leaf {opt_leaf} NaN or inf"
    else:
        # float32 is how the history keeps losses: a float64 loss past its range counts too.
        what = f"the loss at {where} became NaN or inf (in float32, as the history keeps it)"
    raise DivergenceError(
        f"{what} with {lr}; the last finite state (after {int(last_good.step)} updates) is "
        "in .state / .params",
        last_good,
        history,
    )
