"""Transfer functions g and their derivative gates g'(a).

Every rule except dynamic inversion multiplies the propagated signal by the gate
``g'(a_{l-1})`` (Lillicrap's ``∘ h'``, Amit eq. 2, Podlaski Algorithm 4).

Saturated linear (Amit §3.1, Remark 2, eq. 3)::

    σ(a) = clip(a, −1, 1),   gate(a) = 1 if |a| < 1 else 0

Eq. 3 shuts the feedback down when ``|h| ≥ 1`` (the threshold itself included, matching the
Appendix-1 control units ``u = 1[x ≥ 1]``, ``v = −1[x ≤ −1]``), so the gate is the strict
inequality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ._array import ops
from ._validate import check_choice


@dataclass(frozen=True)
class Transfer:
    """A transfer function with its derivative gate; both act elementwise on numpy or torch."""

    name: str
    f: Callable
    gate: Callable
    doc: str = ""
    #: the gate written in terms of the output h = f(a), when that is cheaper (tanh, logistic)
    gate_from_output: Callable | None = None

    def __call__(self, a):
        return self.f(a)


def _linear(a):
    return a


def _linear_gate(a):
    return ops(a).as_float(a == a, a)


def _satlin(a):
    return ops(a).clip(a, -1.0, 1.0)


def _satlin_gate(a):
    o = ops(a)
    return o.as_float(o.abs(a) < 1.0, a)


def _tanh(a):
    return ops(a).tanh(a)


def _tanh_gate(a):
    t = ops(a).tanh(a)
    return 1.0 - t * t


def _logistic(a):
    return ops(a).sigmoid(a)


def _logistic_gate(a):
    s = ops(a).sigmoid(a)
    return s * (1.0 - s)


def _relu(a):
    return ops(a).maximum(a, 0.0)


def _relu_gate(a):
    return ops(a).as_float(a > 0, a)


TRANSFERS: dict[str, Transfer] = {
    t.name: t
    for t in (
        Transfer("linear", _linear, _linear_gate, "identity, gate 1"),
        Transfer("satlin", _satlin, _satlin_gate, "clip(a, −1, 1); gate 1[|a| < 1] (Amit eq. 3)"),
        Transfer("tanh", _tanh, _tanh_gate, "tanh(a); gate 1 − tanh²(a)", lambda h: 1.0 - h * h),
        Transfer("logistic", _logistic, _logistic_gate, "1/(1+e^−a); gate s(1−s) (Lillicrap task 2)",
                 lambda h: h * (1.0 - h)),
        Transfer("relu", _relu, _relu_gate, "max(a, 0); gate 1[a > 0]"),
    )
}


def get_transfer(name: str | Transfer) -> Transfer:
    """Look a transfer up by name (``linear satlin tanh logistic relu``)."""
    if isinstance(name, Transfer):
        return name
    return TRANSFERS[check_choice("activation", name, TRANSFERS)]
