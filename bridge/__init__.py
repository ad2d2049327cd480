"""torch side of credit-circuits: full-scale training with every rule, and the cross-checks
that show the Brian2 circuits reproduce the matrix rules.

Public surface::

    from bridge import FeedbackLinear, FeedbackMLP, convert, TeachingLoss, TrainConfig, run_experiment
"""

from .layers import Activation, BackwardContext, FeedbackLinear
from .losses import TeachingLoss
from .network import FeedbackMLP, convert
from .train import TrainConfig, build_model, run_experiment, train

__all__ = [
    "Activation", "BackwardContext", "FeedbackLinear", "FeedbackMLP", "convert", "TeachingLoss",
    "TrainConfig", "build_model", "run_experiment", "train",
]
