"""Where `fit`'s batches come from: arrays on the device, a sampler on the device, or the host.

One abstraction serves the three. Each source says how many steps an epoch has and what
each compiled call is given (`payload`); `make_epochs` turns that payload into batches
inside the compiled loop:

- `Arrays(x, y, batch_size)`: the data lives on the device; each epoch draws a permutation
  and gathers minibatches from it (`fit(net, loss, opt, x, y, ...)`).
- `Sampled(sample, steps_per_epoch)`: a pure, jittable `sample(key) -> (x_batch, y_batch)`
  drawn inside the compiled loop, one key per step (`fit(..., data=jnet.train.sampled(fn,
  steps_per_epoch=...))`), e.g. random token windows of a corpus kept on the device.
- `HostBatches(iterable, steps_per_epoch)`: any Python iterable of `(x_batch, y_batch)`
  numpy/JAX pairs (`fit(..., data=batches, steps_per_epoch=...)`). `steps_per_call` batches
  are stacked into one `(steps, batch, ...)` array per compiled call (one `lax.scan`), and the
  next call's stack is built and sent to the device while the current call runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# `sample(key) -> (x_batch, y_batch)`: pure jnp, traced once, run inside the compiled epoch.
Sampler = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


class Arrays(NamedTuple):
    """The whole training set on the device; `batch_size=None` is full batch."""

    x: Any
    y: Any
    batch_size: int | None


class Sampled(NamedTuple):
    """Batches drawn on the device by `sample(key)`, `steps_per_epoch` of them an epoch."""

    sample: Sampler
    steps_per_epoch: int


class HostBatches(NamedTuple):
    """An iterable of `(x_batch, y_batch)` pairs on the host, `steps_per_epoch` an epoch."""

    batches: Iterable
    steps_per_epoch: int


def sampled(sample: Sampler, *, steps_per_epoch: int) -> Sampled:
    """A data source for `fit(..., data=...)` whose batches are drawn on the device.

    `sample(key) -> (x_batch, y_batch)` must be pure and jittable (fixed shapes); it is
    called inside the compiled loop with a fresh key for every step, so no batch ever
    crosses from the host. An "epoch" is `steps_per_epoch` such steps. Example, random
    windows of a token array kept on the device:

        def windows(key):
            starts = jax.random.randint(key, (32,), 0, len(ids) - 65)
            x = jax.vmap(lambda s: jax.lax.dynamic_slice(ids, (s,), (64,)))(starts)
            y = jax.vmap(lambda s: jax.lax.dynamic_slice(ids, (s + 1,), (64,)))(starts)
            return x, y
        jnet.fit(net, loss, opt, data=jnet.train.sampled(windows, steps_per_epoch=100), ...)
    """
    if not callable(sample):
        raise TypeError(f"sampled: sample must be a function key -> (x, y); got {sample!r}")
    if not isinstance(steps_per_epoch, int) or isinstance(steps_per_epoch, bool) or (
        steps_per_epoch < 1
    ):
        raise ValueError(f"sampled: steps_per_epoch must be an int >= 1; got {steps_per_epoch!r}")
    return Sampled(sample, steps_per_epoch)


class HostFeed:
    """Draws batches from a host iterable, stacks them per call and puts them on the device.

    The iterable is read as one stream: when an iterator runs out and `iterable` can be
    iterated again (a list, a DataLoader: `iter(iterable) is not iterable`), a new pass
    starts; a one-shot iterator (a generator) that runs out is a ValueError saying after how
    many batches. A batch smaller than the first (a last partial batch) is dropped, and
    counted as consumed; any other difference in shape or dtype is a ValueError.
    """

    def __init__(self, iterable: Iterable, where: str = "fit"):
        self.iterable, self.where = iterable, where
        self.consumed = 0  # batches taken from the stream, partial ones included
        self._iterator: Iterator = iter(iterable)
        self._one_shot = self._iterator is iterable  # a generator: no second pass
        self._passes = 1
        self.first = self._next_raw()
        self._iterator = itertools.chain([self.first], self._iterator)
        self.consumed = 0
        self._shapes = [(np.shape(a), np.asarray(a).dtype) for a in self.first]

    def _next_raw(self) -> tuple:
        try:
            batch = next(self._iterator)
        except StopIteration:
            if self._one_shot or self.consumed == 0:
                raise ValueError(
                    f"{self.where}: the data iterator ran out after {self.consumed} batches; "
                    "give one that yields at least epochs * steps_per_epoch batches, or an "
                    "iterable that can be iterated again (a list, a DataLoader)"
                ) from None
            self._iterator, self._passes = iter(self.iterable), self._passes + 1
            batch = next(self._iterator)
        self.consumed += 1
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise ValueError(
                f"{self.where}: each batch must be a pair (x_batch, y_batch); batch "
                f"{self.consumed - 1} is a {type(batch).__name__}"
            )
        return tuple(batch)

    def skip(self, count: int) -> None:
        """Consumes `count` batches: how a resumed run continues the stream where it was."""
        for _ in range(count):
            self._next_raw()

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        while True:
            x, y = self._next_raw()
            shapes = [(np.shape(x), np.asarray(x).dtype), (np.shape(y), np.asarray(y).dtype)]
            if shapes == self._shapes:
                return np.asarray(x), np.asarray(y)
            if len(x) < self._shapes[0][0][0] and shapes[0][0][1:] == self._shapes[0][0][1:]:
                continue  # a last partial batch: dropped
            raise ValueError(
                f"{self.where}: batch {self.consumed - 1} has x {shapes[0][0]} {shapes[0][1]}, "
                f"y {shapes[1][0]} {shapes[1][1]}; the first had x {self._shapes[0][0]} "
                f"{self._shapes[0][1]}, y {self._shapes[1][0]} {self._shapes[1][1]}"
            )

    def next_stack(self, steps: int, real: int) -> tuple[jax.Array, jax.Array]:
        """`real` batches stacked to `(steps, batch, ...)` (padded by repeating the last,
        which the compiled call does not apply), sent to the device without waiting."""
        pairs = [self.next_batch() for _ in range(real)]
        pairs += [pairs[-1]] * (steps - real)
        xs = np.stack([p[0] for p in pairs])
        ys = np.stack([p[1] for p in pairs])
        # jnp.asarray, not jax.device_put: on CPU both alias the fresh stack (no copy), and
        # device_put takes several times longer about it. Either returns before the call runs.
        return jnp.asarray(xs), jnp.asarray(ys)
