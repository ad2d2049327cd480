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

Error cap (PBP, NDI; Podlaski §7.5.1)
-------------------------------------
``max_norm`` (``None`` = off, else > 0) rescales each example's carried row to
``‖propagate(δ_l)‖ ≤ max_norm`` *before* the gate — Podlaski §7.5.1 imposed ``‖δ‖ ≤ 10`` (linear
regression) and ``≤ 1`` (nonlinear regression) on the backpropagated errors of PBP/NDI/DI
(:class:`plasticity.inversion.DI` has the same parameter).  The cap is the one part of a rule
that is not homogeneous in δ, so whoever hands ``propagate`` a *rescaled* δ must say by how
much: :meth:`Rule.propagate_scaled` takes ``signal = scale × δ``.  The torch engine passes
autograd's ``grad = −δ/n`` (batch-mean loss) with ``scale = −1/n``; the cap then compares
``‖row‖`` with ``max_norm·|scale|`` — i.e. it caps the *true* per-example δ at ``max_norm``,
exactly as :func:`plasticity.network.sgd_step` (which passes δ itself, scale 1) does.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from ._array import ops
from ._validate import check_choice, check_range


@dataclass(frozen=True)
class Rule(abc.ABC):
    """Base of all rule specs.  Subclasses are small and final.

    Capabilities beyond ``propagate`` are declared by inheriting the abstract classes below
    (:class:`MirroredFeedback`, :class:`InitialisedFeedback`, :class:`NetworkRule`,
    :class:`ActivityLearnedFeedback`); the engines test them with ``isinstance``, never by name.
    """

    name: ClassVar[str] = "rule"
    #: 'transpose' (needs no R), 'fixed' (R a constant), 'learned' (R has an update)
    feedback: ClassVar[str] = "fixed"
    #: R_l carries the output error straight to layer l−1 (DFA)
    direct: ClassVar[bool] = False
    #: multiply the carried signal by g'(a_{l−1}); False for dynamic inversion, which inverts g itself
    gated: ClassVar[bool] = True

    @abc.abstractmethod
    def propagate(self, W, R, delta, *, delta_out=None):
        """Signal carried from layer l to layer l−1, before the gate, shape (n, d_{l−1})."""

    def propagate_scaled(self, W, R, signal, scale, *, delta_out=None):
        """``propagate`` of a signal given as ``signal = scale × δ`` (and ``delta_out`` likewise).

        Returns ``scale × propagate(δ)``.  The default just propagates ``signal`` — exact for
        every rule that is linear in δ.  Rules with a part that is not (the ``max_norm`` cap of
        PBP/NDI) override it.  The torch engine calls this with autograd's ``grad = −δ/n``,
        ``scale = −1/n``.
        """
        return self.propagate(W, R, signal, delta_out=delta_out)

    def operator(self, W, R):
        """The feedback matrix M_l (d_{l−1}, d_l) with ``propagate = δ M_lᵀ`` (layer-local rules)."""
        raise NotImplementedError

    def feedback_increment(self, delta, h_prev):
        """ΔR_l per unit learning rate, summed over the batch; ``None`` when R does not learn."""
        return None

    @property
    def needs_feedback(self) -> bool:
        return self.feedback != "transpose"


class MirroredFeedback(abc.ABC):
    """R_l learns W_l's own increment, transposed (mirrored synapses): the engine forms ΔR from ΔW."""

    @abc.abstractmethod
    def feedback_increment_from_weight(self, dW):
        """ΔR_l from ΔW_l (no new product)."""


class InitialisedFeedback(abc.ABC):
    """The rule sets the initial feedback from the initial weights (e.g. DI's Tr-Init)."""

    @abc.abstractmethod
    def initial_feedback(self, W, R=None):
        """The initial R_l for weights ``W`` and a drawn ``R``."""


class NetworkRule(abc.ABC):
    """The teaching signals are a property of the whole network, not of one layer (DI's chains):
    the rule gives all of them at once from the forward pass and the output signal."""

    @abc.abstractmethod
    def reference_signals(self, Ws, Rs, fwd, delta_L, transfers):
        """``[δ_1, …, δ_L]`` (package sign)."""


class ActivityLearnedFeedback(abc.ABC):  # noqa: B024 (a capability marker)
    """R learns from activity the task's backward pass does not carry (a noisy pass, recirculation):
    the torch engine needs a network-level engine registered for the rule's type."""


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
class URFB(Rule, MirroredFeedback):
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


def _check_max_norm(rule) -> None:
    if rule.max_norm is not None:
        object.__setattr__(rule, "max_norm", check_range("max_norm", rule.max_norm, 0.0, None, lo_open=True))


def cap_rows(carried, max_norm: float | None, scale: float = 1.0):
    """Rescale each row of ``carried = scale × c`` so that ``‖c_row‖ ≤ max_norm`` (Podlaski §7.5.1).

    Rows already within the bound are returned bit-for-bit; longer ones are multiplied by
    ``max_norm·|scale| / ‖row‖``.  ``max_norm=None`` returns ``carried`` unchanged.
    """
    if max_norm is None:
        return carried
    if not scale:
        raise ValueError("cap_rows: scale must be nonzero")
    lim = float(max_norm) * abs(float(scale))
    nrm = ((carried * carried).sum(-1)) ** 0.5
    factor = lim / ops(carried).clip(nrm, lim, None)  # 1 exactly where nrm ≤ lim; never 0/0
    return carried * factor[:, None]


@dataclass(frozen=True)
class PBP(Rule):
    """Pseudobackprop: ``δ_{l−1} = g'(a_{l−1}) ∘ W_l⁺ δ_l`` (Lillicrap Fig. 4, Podlaski Alg. 4).

    ``max_norm`` (``None`` or > 0): cap each example's carried ``‖W_l⁺ δ_l‖`` at ``max_norm``
    before the gate (Podlaski §7.5.1: 10 for linear, 1 for nonlinear regression; not used for
    MNIST).  Scale-aware in the torch engine (see the module docstring).
    """

    max_norm: float | None = None
    name: ClassVar[str] = "pbp"
    feedback: ClassVar[str] = "transpose"

    def __post_init__(self):
        _check_max_norm(self)

    def operator(self, W, R=None):
        return ops(W).pinv(W)

    def propagate(self, W, R, delta, *, delta_out=None):
        return self.propagate_scaled(W, R, delta, 1.0)

    def propagate_scaled(self, W, R, signal, scale, *, delta_out=None):
        return cap_rows(signal @ self.operator(W).T, self.max_norm, scale)


@dataclass(frozen=True)
class NDI(Rule):
    """Non-dynamic inversion (Podlaski eq. 10, Algorithm 4) with leak ``alpha`` ≥ 0.

    Contracting or square layer (d_l ≤ d_{l−1}): ``M = B(WB − αI)⁻¹``.
    Expanding layer (d_l > d_{l−1}): ``M = (BW − αI)⁻¹B``.
    As α → 0 these tend to ``B(WB)⁻¹`` and ``(BW)⁻¹B`` (eq. 12).  The latter is a left inverse of
    W: it equals ``W⁺`` on every δ in range(W), and as a matrix when ``B ∝ Wᵀ``.  With Tr-Init
    ``B = −Wᵀ`` both cases are ``W⁺``.

    ``max_norm`` (``None`` or > 0): cap each example's carried ``‖M δ_l‖`` at ``max_norm`` before
    the gate (Podlaski §7.5.1); scale-aware in the torch engine (see the module docstring).
    """

    alpha: float = 1e-3
    max_norm: float | None = None
    name: ClassVar[str] = "ndi"

    def __post_init__(self):
        object.__setattr__(self, "alpha", check_range("alpha", self.alpha, 0.0, None))
        _check_max_norm(self)

    def operator(self, W, R):
        o = ops(W)
        d_l, d_prev = W.shape
        if d_l <= d_prev:  # contracting: B (WB − αI)^{-1}
            A = W @ R - self.alpha * o.eye(d_l, W)
            return o.solve(A.T, R.T).T
        A = R @ W - self.alpha * o.eye(d_prev, W)  # expanding: (BW − αI)^{-1} B
        return o.solve(A, R)

    def propagate(self, W, R, delta, *, delta_out=None):
        return self.propagate_scaled(W, R, delta, 1.0)

    def propagate_scaled(self, W, R, signal, scale, *, delta_out=None):
        return cap_rows(signal @ self.operator(W, R).T, self.max_norm, scale)


RULES: dict[str, type[Rule]] = {c.name: c for c in (BP, FA, FRFB, DFA, URFB, PBP, NDI)}


def register_rule(cls: type[Rule]) -> type[Rule]:
    """Class decorator adding a rule to :data:`RULES` (used by later rule modules); a name that is
    already taken by another class is an error."""
    old = RULES.get(cls.name)
    if old is not None and old.__qualname__ != cls.__qualname__:
        raise ValueError(f"rule name {cls.name!r} registered twice ({old.__module__}.{old.__qualname__} "
                         f"and {cls.__module__}.{cls.__qualname__})")
    RULES[cls.name] = cls
    return cls


def make_rule(name: str | Rule, **params) -> Rule:
    """Build a rule by name; a parameter the rule does not declare is an error naming the valid ones
    (``None`` values mean "the rule's default")."""
    if isinstance(name, Rule):
        if params:
            raise ValueError(f"make_rule: parameters {sorted(params)} given with a ready-made rule {name.name!r}")
        return name
    cls = RULES[check_choice("rule", name, RULES)]
    fields = rule_parameters(cls)
    unknown = sorted(k for k in params if k not in fields)
    if unknown:
        valid = ", ".join(fields) or "none"
        raise ValueError(f"rule {cls.name!r} has no parameter {', '.join(map(repr, unknown))}; valid: {valid}")
    return cls(**{k: v for k, v in params.items() if v is not None})


def rule_parameters(rule) -> list[str]:
    """The parameter names a rule (class, instance or name) declares."""
    cls = RULES[check_choice("rule", rule, RULES)] if isinstance(rule, str) else rule
    return [f.name for f in dataclasses.fields(cls)]
