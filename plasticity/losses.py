"""Losses and the top teaching signal ``δ_L = −∂L/∂a_L``.

Each loss is written per example on the output activity ``y`` (batch-first, shape (n, C)); the
torch engine averages over the batch.  ``teaching(y, target)`` returns ``−∂L/∂y``; the engine
multiplies by the output gate ``g_L'(a_L)`` (1 for a linear output).

* MSE (Lillicrap Methods): ``L = ½‖y* − y‖²``, ``−∂L/∂y = e = y* − y``.
* Softmax cross-entropy (Amit §3.2): ``L = −Σ t log softmax(y)``, ``−∂L/∂y = t − p``.
* Multi-class hinge with weight μ (Amit eq. 4–6), for the presented class c::

      L = max(1 − y_c, 0) + μ Σ_{i≠c} max(1 + y_i, 0)                         (4)
      δ_i = 1 if i = c and y_i ≤ 1;  −μ if i ≠ c and y_i ≥ −1;  0 otherwise    (6)

Targets are class labels (integers) for ``ce`` and ``hinge``; ``mse`` takes target vectors or
labels (then one-hot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._array import ops
from ._validate import check_choice, check_range


def _targets_as_matrix(target, y):
    o = ops(y)
    if target.ndim == 1:
        return o.one_hot(target, y.shape[-1], y)
    if tuple(target.shape) != tuple(y.shape):
        raise ValueError(f"target shape {tuple(target.shape)} does not match output shape {tuple(y.shape)}")
    return target


@dataclass(frozen=True)
class Loss:
    name: ClassVar[str]
    classification: ClassVar[bool] = False

    def value(self, y, target):  # pragma: no cover - abstract
        """Per-example loss, shape (n,)."""
        raise NotImplementedError

    def teaching(self, y, target):  # pragma: no cover - abstract
        """``−∂L/∂y`` per example, shape (n, C)."""
        raise NotImplementedError


@dataclass(frozen=True)
class MSE(Loss):
    name: ClassVar[str] = "mse"

    def value(self, y, target):
        e = _targets_as_matrix(target, y) - y
        return 0.5 * ops(y).sum(e * e, axis=-1)

    def teaching(self, y, target):
        return _targets_as_matrix(target, y) - y


@dataclass(frozen=True)
class CrossEntropy(Loss):
    name: ClassVar[str] = "ce"
    classification: ClassVar[bool] = True

    def value(self, y, target):
        o = ops(y)
        return -o.sum(_targets_as_matrix(target, y) * o.log_softmax(y), axis=-1)

    def teaching(self, y, target):
        return _targets_as_matrix(target, y) - ops(y).softmax(y)


@dataclass(frozen=True)
class Hinge(Loss):
    """Amit's multi-class hinge (eq. 4); ``mu`` weighs the wrong classes, 0 < μ ≤ 1."""

    mu: float = 1.0
    name: ClassVar[str] = "hinge"
    classification: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "mu", check_range("mu", self.mu, 0.0, 1.0, lo_open=True))

    def value(self, y, target):
        o = ops(y)
        t = _targets_as_matrix(target, y)
        right = o.maximum(1.0 - y, 0.0) * t
        wrong = o.maximum(1.0 + y, 0.0) * (1.0 - t)
        return o.sum(right + self.mu * wrong, axis=-1)

    def teaching(self, y, target):
        o = ops(y)
        t = _targets_as_matrix(target, y)
        up = t * o.as_float(y <= 1.0, y)
        down = (1.0 - t) * o.as_float(y >= -1.0, y)
        return up - self.mu * down


LOSSES = {c.name: c for c in (MSE, CrossEntropy, Hinge)}


def get_loss(name: str | Loss, **params) -> Loss:
    """Build a loss by name (``mse ce hinge``); ``mu`` applies to ``hinge``."""
    if isinstance(name, Loss):
        return name
    cls = LOSSES[check_choice("loss", name, LOSSES)]
    return cls(**params) if cls is Hinge else cls()
