"""Learning rules as validated, immutable specs with their matrix-level reference math.

Convention (see the package docstring): ``δ_l = −∂L/∂a_l``; batch-first arrays, ``delta`` has
shape (n, d_l); ``W_l`` is (d_l, d_{l-1}); the feedback ``R_l`` is (d_{l-1}, d_l) — or
(d_{l-1}, d_L) for the direct rule DFA.  Each rule says how ``δ_l`` is carried to layer l−1
*before* the derivative gate::

    δ_{l-1} = g'(a_{l-1}) ∘ propagate(W_l, R_l, δ_l)

and, for learned feedback, the increment of ``R_l`` per unit learning rate.

| rule | propagate (column form)             | ΔR_l / η                  | source |
|------|-------------------------------------|---------------------------|--------|
| bp   | ``W_lᵀ δ_l``                        | –                         | Lillicrap Fig. 1b, Amit eq. 2 |
| fa   | ``R_l δ_l`` (R fixed random)        | –                         | Lillicrap Fig. 1c |
| frfb | = fa                                | –                         | Amit §3.1 |
| dfa  | ``R_l e`` with ``e = δ_L``          | –                         | direct broadcast (Lillicrap Fig. 2c variant) |
| urfb | ``R_l δ_l``                         | ``ε h_{l−1} δ_lᵀ``        | Amit §3.1, eq. 7 (ε ∈ [0, 1]; ε = 0 is FRFB) |
| pbp  | ``W_l⁺ δ_l``                        | –                         | Lillicrap Fig. 4, Podlaski Alg. 4 |
| ndi  | ``B(WB − αI)⁻¹ δ`` if d_l ≤ d_{l−1}, else ``(BW − αI)⁻¹B δ`` | – | Podlaski eq. 10, Alg. 4 |

Podlaski writes ``B`` for our ``R`` and errors with the opposite sign; propagation is linear
in δ, so the operators carry over unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._array import ops
from ._validate import check_choice, check_range


@dataclass(frozen=True)
class Rule:
    """Base of all rule specs.  Subclasses are small and final."""

    name: ClassVar[str] = "rule"
    #: 'transpose' (needs no R), 'fixed' (R a constant), 'learned' (R has an update)
    feedback: ClassVar[str] = "fixed"
    #: R_l carries the output error straight to layer l−1 (DFA)
    direct: ClassVar[bool] = False
    #: multiply the carried signal by g'(a_{l−1}); False for dynamic inversion, which inverts g itself
    gated: ClassVar[bool] = True

    def propagate(self, W, R, delta, *, delta_out=None):
        """Signal carried from layer l to layer l−1, before the gate, shape (n, d_{l−1})."""
        raise NotImplementedError

    def operator(self, W, R):
        """The feedback matrix M_l (d_{l−1}, d_l) with ``propagate = δ M_lᵀ`` (layer-local rules)."""
        raise NotImplementedError

    def feedback_increment(self, delta, h_prev):
        """ΔR_l per unit learning rate, summed over the batch; ``None`` when R does not learn."""
        return None

    @property
    def needs_feedback(self) -> bool:
        return self.feedback != "transpose"


@dataclass(frozen=True)
class BP(Rule):
    """Backpropagation: ``δ_{l−1} = g'(a_{l−1}) ∘ W_lᵀ δ_l`` (Amit eq. 2)."""

    name: ClassVar[str] = "bp"
    feedback: ClassVar[str] = "transpose"

    def operator(self, W, R=None):
        return W.T

    def propagate(self, W, R, delta, *, delta_out=None):
        return delta @ W


@dataclass(frozen=True)
class FA(Rule):
    """Feedback alignment (Lillicrap 2016): a fixed random R_l replaces W_lᵀ."""

    name: ClassVar[str] = "fa"

    def operator(self, W, R):
        return R

    def propagate(self, W, R, delta, *, delta_out=None):
        return delta @ R.T


@dataclass(frozen=True)
class FRFB(FA):
    """Amit's fixed random feedback: the same operator as FA."""

    name: ClassVar[str] = "frfb"


@dataclass(frozen=True)
class DFA(Rule):
    """Direct feedback alignment: every hidden layer receives ``R_l e`` from the output error."""

    name: ClassVar[str] = "dfa"
    direct: ClassVar[bool] = True

    def propagate(self, W, R, delta, *, delta_out=None):
        if delta_out is None:
            raise ValueError("dfa needs the output teaching signal delta_out")
        return delta_out @ R.T


@dataclass(frozen=True)
class URFB(Rule):
    """Updated random feedback (Amit §3.1): R_l receives ε × the Hebbian increment of W_l, transposed.

    ``ΔW_l = η δ_l h_{l−1}ᵀ`` and ``ΔR_l = ε η h_{l−1} δ_lᵀ``; with ε = 1 and R₀ = W₀ᵀ the
    network stays exactly backprop, with ε = 0 it is FRFB.  ``epsilon`` ∈ [0, 1].
    """

    epsilon: float = 1.0
    name: ClassVar[str] = "urfb"
    feedback: ClassVar[str] = "learned"

    def __post_init__(self):
        object.__setattr__(self, "epsilon", check_range("epsilon", self.epsilon, 0.0, 1.0))

    def operator(self, W, R):
        return R

    def propagate(self, W, R, delta, *, delta_out=None):
        return delta @ R.T

    def feedback_increment(self, delta, h_prev):
        return self.epsilon * (h_prev.T @ delta)

    def feedback_increment_from_weight(self, dW):
        """The same increment from W's own: ``ΔR_l = ε ΔW_lᵀ`` (mirrored synapses), no new product."""
        return self.epsilon * dW.T


@dataclass(frozen=True)
class PBP(Rule):
    """Pseudobackprop: ``δ_{l−1} = g'(a_{l−1}) ∘ W_l⁺ δ_l`` (Lillicrap Fig. 4, Podlaski Alg. 4)."""

    name: ClassVar[str] = "pbp"
    feedback: ClassVar[str] = "transpose"

    def operator(self, W, R=None):
        return ops(W).pinv(W)

    def propagate(self, W, R, delta, *, delta_out=None):
        return delta @ self.operator(W).T


@dataclass(frozen=True)
class NDI(Rule):
    """Non-dynamic inversion (Podlaski eq. 10, Algorithm 4) with leak ``alpha`` ≥ 0.

    Contracting or square layer (d_l ≤ d_{l−1}): ``M = B(WB − αI)⁻¹``.
    Expanding layer (d_l > d_{l−1}): ``M = (BW − αI)⁻¹B``.
    As α → 0 these tend to ``B(WB)⁻¹`` and ``(BW)⁻¹B`` (eq. 12).  The latter is a left inverse of
    W: it equals ``W⁺`` on every δ in range(W), and as a matrix when ``B ∝ Wᵀ``.  With Tr-Init
    ``B = −Wᵀ`` both cases are ``W⁺``.
    """

    alpha: float = 1e-3
    name: ClassVar[str] = "ndi"

    def __post_init__(self):
        object.__setattr__(self, "alpha", check_range("alpha", self.alpha, 0.0, None))

    def operator(self, W, R):
        o = ops(W)
        d_l, d_prev = W.shape
        if d_l <= d_prev:  # contracting: B (WB − αI)^{-1}
            A = W @ R - self.alpha * o.eye(d_l, W)
            return o.solve(A.T, R.T).T
        A = R @ W - self.alpha * o.eye(d_prev, W)  # expanding: (BW − αI)^{-1} B
        return o.solve(A, R)

    def propagate(self, W, R, delta, *, delta_out=None):
        return delta @ self.operator(W, R).T


RULES: dict[str, type[Rule]] = {c.name: c for c in (BP, FA, FRFB, DFA, URFB, PBP, NDI)}


def register_rule(cls: type[Rule]) -> type[Rule]:
    """Class decorator adding a rule to :data:`RULES` (used by later rule modules)."""
    RULES[cls.name] = cls
    return cls


def make_rule(name: str | Rule, **params) -> Rule:
    """Build a rule by name, passing only the parameters that rule declares."""
    if isinstance(name, Rule):
        return name
    cls = RULES[check_choice("rule", name, RULES)]
    fields = getattr(cls, "__dataclass_fields__", {})
    return cls(**{k: v for k, v in params.items() if k in fields and v is not None})
