"""Training: a jit-compiled step, whole epochs on the device, and `fit`.

- `state`: `TrainState` (params, optimizer state, step, key, model state) and `init_state`,
  the one place a TrainState is built; `DivergenceError`.
- `step`: `make_step` / `train_step` (jnet's hand-written gradient + any optax optimizer)
  and weight decay (`l2_penalty`, the decay mask rule).
- `epochs`: `make_epochs`, whole epochs as one compiled `lax.scan`, and `epochs_per_call`.
- `fit`: `config` (the checked settings, `FitConfig`), `prepare` (data source, state,
  engine), `loop` (the compiled calls and what follows each), `sources` (arrays, host
  batches, `sampled`), `callbacks` (`early_stopping`, `best_checkpoint`), checkpoints,
  divergence replay (`divergence`), history, progress bar and metrics.jsonl (`history`).
- `per_layer`: per-layer optimizers for a serial network.
"""

from jnet.train.callbacks import Event as Event
from jnet.train.callbacks import best_checkpoint as best_checkpoint
from jnet.train.callbacks import early_stopping as early_stopping
from jnet.train.config import FitConfig as FitConfig
from jnet.train.epochs import FULL_BATCH_EPOCHS_PER_CALL as FULL_BATCH_EPOCHS_PER_CALL
from jnet.train.epochs import NO_STOP as NO_STOP
from jnet.train.epochs import Epochs as Epochs
from jnet.train.epochs import epochs_per_call as epochs_per_call
from jnet.train.epochs import make_epochs as make_epochs
from jnet.train.fit import fit as fit
from jnet.train.identity import RunSettings as RunSettings
from jnet.train.per_layer import per_layer as per_layer
from jnet.train.result import FitResult as FitResult
from jnet.train.sources import sampled as sampled
from jnet.train.state import DivergenceError as DivergenceError
from jnet.train.state import TrainState as TrainState
from jnet.train.state import init_state as init_state
from jnet.train.step import default_decay_mask as default_decay_mask
from jnet.train.step import l2_penalty as l2_penalty
from jnet.train.step import make_step as make_step
from jnet.train.step import train_step as train_step
