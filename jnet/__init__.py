"""jnet: neural networks with hand-written forward and backward passes, on JAX."""

from jnet import augment as augment
from jnet import initializers as initializers
from jnet.evaluation import accuracy as accuracy
from jnet.evaluation import evaluate as evaluate
from jnet.evaluation import predict as predict
from jnet.gradcheck import GradientCheckError as GradientCheckError
from jnet.gradcheck import GradientReport as GradientReport
from jnet.gradcheck import check_gradients as check_gradients
from jnet.layers import Layer as Layer
from jnet.layers import LayerError as LayerError
from jnet.layers import avg_pool as avg_pool
from jnet.layers import batch_norm as batch_norm
from jnet.layers import concat as concat
from jnet.layers import conv2d as conv2d
from jnet.layers import dense as dense
from jnet.layers import dropout as dropout
from jnet.layers import flatten as flatten
from jnet.layers import global_avg_pool as global_avg_pool
from jnet.layers import init_with_state as init_with_state
from jnet.layers import leaky_relu as leaky_relu
from jnet.layers import max_pool as max_pool
from jnet.layers import mlp as mlp
from jnet.layers import relu as relu
from jnet.layers import residual as residual
from jnet.layers import serial as serial
from jnet.layers import sigmoid as sigmoid
from jnet.layers import softmax as softmax
from jnet.layers import tanh as tanh
from jnet.losses import Loss as Loss
from jnet.losses import mean_squared_error as mean_squared_error
from jnet.losses import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from jnet.losses import softmax_cross_entropy as softmax_cross_entropy
from jnet.network import apply as apply
from jnet.network import value_and_grad as value_and_grad
from jnet.train import DivergenceError as DivergenceError
from jnet.train import TrainState as TrainState
from jnet.train import fit as fit
from jnet.train import init_state as init_state
from jnet.train import l2_penalty as l2_penalty
from jnet.train import make_step as make_step
from jnet.train import per_layer as per_layer
from jnet.train import train_step as train_step

__version__ = "0.1.0"
