"""Named tasks with their papers' defaults (architecture, transfer, loss, initial scales).

A task's defaults fill every training option the user leaves unset; see :class:`bridge.train.TrainConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskDefaults:
    sizes: tuple
    activation: str
    output_activation: str
    loss: str
    lr: float
    epochs: int
    batch_size: int
    weight_scale: float | None = None
    feedback_scale: float | None = None
    bias: bool = True
    regression: bool = False  # vector targets (only --loss mse applies), not class labels
    data_kwargs: dict = field(default_factory=dict)
    source: str = ""


TASKS: dict[str, TaskDefaults] = {
    # Lillicrap 2016 Methods, task 1: 30-20-10 linear, W ~ U(±0.01), B ~ U(±0.5), squared error.
    "lillicrap-linear": TaskDefaults(
        (30, 20, 10), "linear", "linear", "mse", lr=0.005, epochs=20, batch_size=1,
        weight_scale=0.01, feedback_scale=0.5, bias=False, regression=True,
        data_kwargs={"n_train": 1000, "n_test": 500}, source="Lillicrap 2016, task 1",
    ),
    # Lillicrap 2016 Methods, task 3: tanh hidden units, linear outputs, biases.
    "lillicrap-nonlinear": TaskDefaults(
        (30, 20, 10, 10), "tanh", "linear", "mse", lr=0.005, epochs=20, batch_size=1,
        weight_scale=0.1, feedback_scale=0.5, bias=True, regression=True,
        data_kwargs={"n_train": 2000, "n_test": 5000}, source="Lillicrap 2016, task 3",
    ),
    "digits": TaskDefaults(
        (64, 100, 10), "tanh", "linear", "ce", lr=0.05, epochs=20, batch_size=16,
        source="scikit-learn digits (embedded)",
    ),
    # Lillicrap 2016 task 2: 784-1000-10 logistic units, one-hot targets, squared error.
    "mnist": TaskDefaults(
        (784, 1000, 10), "logistic", "logistic", "mse", lr=0.2, epochs=20, batch_size=32,
        weight_scale=0.3, feedback_scale=2.0, source="Lillicrap 2016, task 2",
    ),
    "fashion-mnist": TaskDefaults(
        (784, 1000, 10), "logistic", "logistic", "mse", lr=0.2, epochs=20, batch_size=32,
        weight_scale=0.3, feedback_scale=2.0, source="Lillicrap 2016 task 2 settings on Fashion-MNIST",
    ),
    # The original CIFAR-10 / CIFAR-100 batches: 3072-1000-1000-1000-C tanh MLP, softmax cross-entropy.
    "cifar10": TaskDefaults(
        (3072, 1000, 1000, 1000, 10), "tanh", "linear", "ce", lr=0.01, epochs=20, batch_size=64,
        source="CIFAR-10 (original batches)",
    ),
    "cifar100": TaskDefaults(
        (3072, 1000, 1000, 1000, 100), "tanh", "linear", "ce", lr=0.01, epochs=20, batch_size=64,
        source="CIFAR-100, fine labels (original batches)",
    ),
    # Not CIFAR-10: every image re-encoded as a quality-75 JPEG; a name of its own so that no number
    # measured on it passes for a CIFAR-10 result.
    "cifar10-lossy": TaskDefaults(
        (3072, 1000, 1000, 1000, 10), "tanh", "linear", "ce", lr=0.01, epochs=20, batch_size=64,
        source="LOSSY CIFAR-10 stand-in (JPEG q75), not CIFAR-10",
    ),
}
