"""Training: parameters, optimizers, the training context and programs with gradients."""

from .context import TrainingContext
from .optim import SGD, Adam, Optimizer
from .parameter import Parameter

__all__ = ["TrainingContext", "SGD", "Adam", "Optimizer", "Parameter"]
