"""Language models on a token stream: compiled training, whole-split evaluation, sampling.

    import jnet.lm

- `stream`: `make_stream_steps` (several training steps of `jnet.train`'s step on random
  windows of a token stream held on the device, as one compiled `lax.scan`),
  `make_stream_eval` (the mean loss over every non-overlapping window of a split) and
  `fit_stream`, the loop over compiled calls with evaluation and a history.
- `recipe`: `nanogpt_adamw`, nanoGPT's optimizer as an optax chain (clipping, warm-up and
  cosine decay, AdamW with weight decay on matrices only).
- `sampling`: `generate`, compiled text generation from a prompt (temperature, top-k).

Any network and any loss work: the network maps int32 tokens `(N, T)` to outputs the loss
takes with targets `(N, T)` (logits `(N, T, V)` with `jnet.softmax_cross_entropy`).
"""

from jnet.lm.recipe import nanogpt_adamw as nanogpt_adamw
from jnet.lm.recipe import nanogpt_schedule as nanogpt_schedule
from jnet.lm.sampling import generate as generate
from jnet.lm.stream import StreamHistory as StreamHistory
from jnet.lm.stream import fit_stream as fit_stream
from jnet.lm.stream import make_stream_eval as make_stream_eval
from jnet.lm.stream import make_stream_steps as make_stream_steps
