"""What `fit` checks and prepares once: the data source, the state, the compiled engine."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import numpy as np

from jnet import arguments, parallel
from jnet.evaluation import validate_data
from jnet.train.config import FitConfig, check_learning_rates
from jnet.train.epochs import FULL_BATCH_EPOCHS_PER_CALL, Epochs, make_epochs
from jnet.train.epochs import epochs_per_call as choose_epochs_per_call
from jnet.train.identity import RunSettings, describe_optimizer, learning_rates
from jnet.train.sources import Arrays, HostBatches, HostFeed, Sampled
from jnet.train.state import TrainState, init_state

HOST_STEPS_PER_CALL = 128  # default batches stacked per compiled call over host data


class Prepared(NamedTuple):
    """Everything the loop over compiled calls needs, made once.

    `source` is the checked data source (`Arrays` on the device, `Sampled`, or
    `HostBatches`), `feed` the host stream (None otherwise); `per_call` the epochs per
    compiled call (arrays, sampled) or the batches per call (host); `validation` on the
    device or None.
    """

    config: FitConfig
    source: Arrays | Sampled | HostBatches
    feed: HostFeed | None
    state: TrainState
    validation: Any
    engine: Epochs
    per_call: int
    settings: RunSettings
    sharding: Any = None  # each batch's sharding over `config.mesh`


def choose_source(config: FitConfig, x: Any, y: Any, data: Any) -> Arrays | Sampled | HostBatches:
    """`x`/`y` arrays, or `data` (a `jnet.train.sampled(...)` or an iterable of batches)."""
    if data is None:
        if x is None or y is None:
            raise ValueError("fit: give the training data as x and y arrays, or as data=")
        if config.steps_per_epoch is not None or config.steps_per_call is not None:
            raise ValueError("fit: steps_per_epoch and steps_per_call are for data=; with x/y "
                             "an epoch is N // batch_size steps")  # fmt: skip
        return Arrays(x, y, config.batch_size)
    if x is not None or y is not None:
        raise ValueError("fit: give either x and y, or data=, not both")
    if config.mesh is not None:
        raise ValueError("fit: mesh= works with x/y arrays; data= runs on one device")
    if config.batch_size is not None:
        raise ValueError("fit: batch_size is for x/y arrays; with data= the batches set it")
    if isinstance(data, Sampled):
        if config.steps_per_call is not None:
            raise ValueError("fit: steps_per_call is for host batches; sampled batches run "
                             "whole epochs per call (epochs_per_call)")  # fmt: skip
        if config.steps_per_epoch not in (None, data.steps_per_epoch):
            raise ValueError("fit: steps_per_epoch differs from the sampled source's own")
        return data
    if not hasattr(data, "__iter__"):
        raise TypeError(f"fit: data must be an iterable of (x, y) batches or "
                        f"jnet.train.sampled(...); got {type(data).__name__}")  # fmt: skip
    if config.steps_per_epoch is None:
        raise ValueError("fit: data= as an iterable of batches needs steps_per_epoch=")
    if config.epochs_per_call is not None:
        raise ValueError("fit: epochs_per_call is for x/y and sampled data; host batches "
                         "run steps_per_call batches per compiled call")  # fmt: skip
    return HostBatches(data, config.steps_per_epoch)


def example_batch(source, key) -> tuple[Any, Any, HostFeed | None]:
    """A concrete batch to check and size the network with (and the host feed)."""
    if isinstance(source, Arrays):
        return source.x, source.y, None
    if isinstance(source, Sampled):
        x, y = jax.jit(source.sample)(key)
        return x, y, None
    feed = HostFeed(source.batches)
    return feed.first[0], feed.first[1], feed


def prepare(config: FitConfig, x: Any, y: Any, data: Any) -> Prepared:
    """Checks the data against the network and builds the state, the source and the engine."""
    source = choose_source(config, x, y, data)
    init_key, run_key = jax.random.split(config.key)
    bx, by, feed = example_batch(source, run_key)
    state = init_state(config.net, config.optimizer, init_key, (1,) + np.shape(bx)[1:],
                       config.params)  # fmt: skip
    arguments.float_params("fit", state.params)
    check = lambda a, b, where: validate_data(  # noqa: E731
        config.net, config.loss, state.params, a, b, where, state=state.model_state
    )
    bx, by = check(bx, by, "fit")
    validation = config.validation and check(*config.validation, "fit(validation)")
    state = state._replace(key=run_key)
    hyper = describe_optimizer(config.optimizer, state.opt_state)
    check_learning_rates(learning_rates(hyper))
    sharding = None
    if isinstance(source, Arrays):
        bx, by, validation, state, sharding = parallel.place(
            config.mesh, bx, by, validation, state, config.batch_size
        )
        source = source._replace(x=bx, y=by)
        batch, examples = config.batch_size, int(bx.shape[0])
    else:
        batch = int(np.shape(bx)[0])
        examples = source.steps_per_epoch * batch
    settings = RunSettings(
        config.net.name, config.loss.name, hyper, batch, examples, float(config.l2),
        validation is not None,
        getattr(config.augment, "__qualname__", None if config.augment is None else "?"),
    )  # fmt: skip
    return Prepared(config, source, feed, state, validation, None, 0, settings, sharding)


def build_engine(prep: Prepared, done: int) -> Prepared:
    """The compiled engine, once the epochs already done (a resume) are known."""
    config, source = prep.config, prep.source
    options = dict(
        l2=config.l2, l2_mask=config.l2_mask, augment=config.augment,
        eval_batch_size=config.eval_batch_size, metrics=config.metrics,
    )  # fmt: skip
    if isinstance(source, HostBatches):
        spe = source.steps_per_epoch
        calls = math.ceil(spe / (config.steps_per_call or HOST_STEPS_PER_CALL))
        per_call = math.ceil(spe / calls)  # the epoch's last call may apply fewer
        engine = make_epochs(config.net, config.loss, config.optimizer, num_examples=None,
                             batch_size=None, epochs=1, steps=per_call, **options)  # fmt: skip
        return prep._replace(engine=engine, per_call=per_call)
    full = isinstance(source, Arrays) and source.batch_size is None
    limit = config.epochs_per_call or (FULL_BATCH_EPOCHS_PER_CALL if full else 1)
    per_call = choose_epochs_per_call(
        max(config.epochs - done, 1), limit, config.checkpoint_every, done
    )
    if isinstance(source, Sampled):
        engine = make_epochs(config.net, config.loss, config.optimizer, num_examples=None,
                             batch_size=None, epochs=per_call, sample=source.sample,
                             steps=source.steps_per_epoch, **options)  # fmt: skip
    else:
        engine = make_epochs(config.net, config.loss, config.optimizer,
                             num_examples=source.x.shape[0], batch_size=source.batch_size,
                             epochs=per_call, sharding=prep.sharding, **options)  # fmt: skip
    return prep._replace(engine=engine, per_call=per_call)
