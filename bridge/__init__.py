"""The torch engine of credit-circuits: layers whose backward pass follows a learning rule,
networks, ``convert`` for existing models, losses, the training step and loop, and metrics.  Every
rule trains in a plain torch loop (``loss.backward(); opt.step()``).

Public surface::

    from bridge import FeedbackLinear, FeedbackMLP, convert, TeachingLoss, train, training_step

Subpackages: :mod:`bridge.app` (the ``credit`` application: CLI, run folders, tasks, plots, bench),
:mod:`bridge.checks` (the cross-checks — the only code importing both the circuits and the engine);
the data loaders are :mod:`bridge.data`.
"""

from .layers import Activation, BackwardContext, FeedbackLinear, PassRecord
from .losses import TeachingLoss
from .metrics import feedback_alignment, signal_angles, teaching_signals_of
from .network import FeedbackMLP, convert, feedback_layers
from .train import Diverged, evaluate, make_optimizer, make_scheduler, train, training_step

__all__ = [
    "Activation", "BackwardContext", "FeedbackLinear", "PassRecord", "FeedbackMLP", "convert", "feedback_layers",
    "TeachingLoss", "train", "training_step", "evaluate", "make_optimizer", "make_scheduler", "Diverged",
    "signal_angles", "feedback_alignment", "teaching_signals_of",
]
