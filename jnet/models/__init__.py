"""Models built from layers: `mlp`, `transformer_block`, `gpt`.

Each is an ordinary `Layer` made of `serial`, `residual` and `tie`, so `jnet.summary` and
the gradient checker walk into it and name its inner layers by address.
"""

from jnet.models.mlp import mlp as mlp
from jnet.models.transformer import gpt as gpt
from jnet.models.transformer import transformer_block as transformer_block
