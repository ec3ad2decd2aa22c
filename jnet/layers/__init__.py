"""Layers by family. Each module is one family; all share the `Layer` contract in `base`.

- `base`: the `Layer` NamedTuple and the stateful/stateless calling helpers.
- `checks`: input checks the families share (float dtype, axes, feature counts).
- `core`: dense, the activations, flatten, dropout.
- `combinators`: serial (layers made of layers), the `<index>:<name>` addresses, and the
  forward through a combinator's `wiring` (see `base.Layer`).
- `tie`: one parameter shared by two layers (GPT's tied token matrix), gradients summed.
- `embedding`: embedding (token ids) and positional_embedding; `layer_norm`: layer_norm.
- `recurrent`: rnn, lstm, gru (backpropagation through time by hand) and masking;
  `recurrent_cells` holds their step maths.
- `windows`: padding rules and shifted-slice helpers shared by convolution and pooling.
- `conv`: conv2d (im2col or `lax.conv_general_dilated`, chosen per backend).
- `pool`: max_pool, avg_pool, global_avg_pool.
- `norm`: batch_norm (stateful: running statistics).
- `residual`: residual and concat (fan-out) blocks.
- `attention`: self_attention (memory linear in T); `attention_blocks` holds its maths.
"""

from jnet.layers.attention import self_attention as self_attention
from jnet.layers.base import Cache as Cache
from jnet.layers.base import Layer as Layer
from jnet.layers.base import Params as Params
from jnet.layers.base import Shape as Shape
from jnet.layers.base import State as State
from jnet.layers.base import forward_with_state as forward_with_state
from jnet.layers.base import init_with_state as init_with_state
from jnet.layers.checks import check_float as check_float
from jnet.layers.combinators import LayerError as LayerError
from jnet.layers.combinators import serial as serial
from jnet.layers.conv import conv2d as conv2d
from jnet.layers.core import dense as dense
from jnet.layers.core import dropout as dropout
from jnet.layers.core import flatten as flatten
from jnet.layers.core import gelu as gelu
from jnet.layers.core import leaky_relu as leaky_relu
from jnet.layers.core import relu as relu
from jnet.layers.core import sigmoid as sigmoid
from jnet.layers.core import softmax as softmax
from jnet.layers.core import tanh as tanh
from jnet.layers.embedding import embedding as embedding
from jnet.layers.embedding import positional_embedding as positional_embedding
from jnet.layers.layer_norm import layer_norm as layer_norm
from jnet.layers.norm import batch_norm as batch_norm
from jnet.layers.pool import avg_pool as avg_pool
from jnet.layers.pool import global_avg_pool as global_avg_pool
from jnet.layers.pool import max_pool as max_pool
from jnet.layers.recurrent import gru as gru
from jnet.layers.recurrent import lstm as lstm
from jnet.layers.recurrent import masking as masking
from jnet.layers.recurrent import rnn as rnn
from jnet.layers.residual import concat as concat
from jnet.layers.residual import residual as residual
from jnet.layers.tie import tie as tie
from jnet.models.mlp import mlp as mlp  # built from layers: in jnet.models
