"""Network IR: layer kinds and the :class:`Network` with the one forward pass."""

from nnresilience.network.layers import (
    ACTIVATIONS,
    Affine,
    Arctan,
    Layer,
    LeakyReLU,
    MaxPool,
    ReLU,
    Sigmoid,
    Tanh,
)
from nnresilience.network.model import Network, sequential

__all__ = ["ACTIVATIONS", "Affine", "Arctan", "Layer", "LeakyReLU", "MaxPool", "Network",
           "ReLU", "Sigmoid", "Tanh", "sequential"]
