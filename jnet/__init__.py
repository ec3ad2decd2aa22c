"""jnet: neural networks with hand-written forward and backward passes, on JAX."""

from jnet import init as init
from jnet.gradcheck import GradientCheckError as GradientCheckError
from jnet.gradcheck import GradientReport as GradientReport
from jnet.gradcheck import check_gradients as check_gradients
from jnet.layers import Layer as Layer
from jnet.layers import dense as dense
from jnet.layers import dropout as dropout
from jnet.layers import flatten as flatten
from jnet.layers import leaky_relu as leaky_relu
from jnet.layers import relu as relu
from jnet.layers import sigmoid as sigmoid
from jnet.layers import softmax as softmax
from jnet.layers import tanh as tanh
from jnet.losses import Loss as Loss
from jnet.losses import mean_squared_error as mean_squared_error
from jnet.losses import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from jnet.losses import softmax_cross_entropy as softmax_cross_entropy
from jnet.network import apply as apply
from jnet.network import serial as serial
from jnet.network import value_and_grad as value_and_grad

__version__ = "0.1.0"
