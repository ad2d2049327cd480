"""Rules whose feedback matrices are *learned from activity*: node perturbation (NP) and reciprocal
feedback (RF) trained by recirculation.

Both rules carry the teaching signal down with a learned matrix ``R_l`` (d_{l−1}, d_l) — the layer
operator is ``propagate = δ_l R_lᵀ`` exactly as in FA — but ``R_l`` does not learn from ``δ_l h_{l−1}ᵀ``
(as URFB does).  It learns from *extra activity*: a second, noisy forward pass (NP) or noise-driven
recirculation phases (RF).  In the torch engine that extra pass runs in an after-backward hook
(:mod:`bridge.learned_feedback`), so ``Rule.feedback_increment`` returns ``None`` here; the matrix
math lives in the pure functions of this module, written once for numpy and torch.

Node perturbation (Lansdell, Prakash & Kording 2019, file 004)
-------------------------------------------------------------
Noisy hidden responses (§2)::

    h̃^i = σ(W^i h̃^{i−1}) + c_h ξ^i,   ξ^i ~ N(0, I),   i = 1 … N (hidden layers only)

Estimator (§2, Suppl. eq. 3)::

    λ̂^i = (L̃(x, y, ξ) − L(x, y)) ξ^i / c_h      E[λ̂^i | x, y] ≈ ∂L/∂h^i

Feedback by least squares (§3.1, Suppl. eq. 4, 5, 9)::

    B̂^{i+1} = argmin_B E‖Bᵀ ẽ^{i+1} − λ̂^i‖²,   (B̂^{i+1})ᵀ = λ̂ ẽᵀ (ẽ ẽᵀ)⁻¹     (closed form)

solved by SGD once per minibatch, concurrently with ``ΔW^i = η ẽ^i h^{i−1}ᵀ``.  ``mode='direct'``
regresses on the *output* error ẽ^{N+1} instead (§3.3, Corollary 1, DFA-like); for a linear network
that B converges to the product ``W^{N+1} ⋯ W^{n}``.

**Sign at the boundary.**  Lansdell's ``e`` is ``∂L/∂a`` and ``λ̂`` estimates ``∂L/∂h``; our teaching
signal is ``δ = −∂L/∂a`` and our ``propagate`` returns ``−∂L/∂h`` (before the gate).  So the regression
target is ``t = −λ̂`` and the regressor is ``δ = −ẽ``:  ``‖R δ − t‖ = ‖Bᵀẽ − λ̂‖`` with ``R = Bᵀ``.
Lansdell's ``B^{i+1}`` has W's shape; our ``R_l = (B^l)ᵀ`` has Wᵀ's shape, and the theorem reads
``R_l → W_lᵀ`` (Theorem 2, identity σ, ``c_h → 0``).

Reciprocal feedback by recirculation (Cameron, Chen, Wagner & Sejnowski, poster, file 000)
-----------------------------------------------------------------------------------------
Linearised recirculation ("Locally learning pseudoinverse feedback connections")::

    h = A x,   x̂ = B h,   ĥ = A x̂           (the three recirculation phases)
    ΔA = (h − ĥ) xᵀ,   ΔB = (x − x̂) hᵀ       (hidden / input reconstruction errors)

driven by random mean-zero noise ``x`` at each layer.  With ``E[x xᵀ] = σ² I`` the mean flows are
``ΔB = σ²(I − BA)Aᵀ`` and ``ΔA = σ²A(I − BA)``; for a full-row-rank (contracting) A the only fixed
point is ``B = A⁺``.  (For an expanding A the part of B in the null space of Aᵀ never moves; the
optional ``decay`` λ gives the ridge fixed point ``B = Aᵀ(AAᵀ + λI)⁻¹ → A⁺`` for any shape.)

RF training rule (poster, "Learning rule")::

    δW_l = (Π_{i=l+1}^{L} W_i⁺) e h_{l−1}ᵀ

with the learned reciprocal ``R_i ≈ W_i⁺`` in place of each ``W_i⁺``.  Sign: the poster writes
``e = h_L − h_L*`` and gradient descent ``δW = −J eh``; our ``δ_L = −∂L/∂a_L`` (``= −e`` for squared
error, linear output) absorbs that minus sign.  **Which matrix learns:** A is the forward weight
``W_l`` itself (the reciprocal pair is forward synapse + feedback synapse); by default only ``R_l = B``
is plastic under recirculation and ``W_l`` learns from the task alone.  ``ΔA = A(I − BA)xxᵀ`` vanishes
identically once ``B = A⁺`` (``A − AA⁺A = 0``); ``forward_recirculation=True`` adds it to W anyway
(the poster's autoencoder setting, "trained concurrently").  Non-linear networks gate the carried
signal with ``g'(a_{l−1})`` like pseudobackprop.  ``rf-exact`` uses the exact ``W_l⁺`` (control).

Symbol table (paper → code)
---------------------------
======================  ==================================  ==========================
paper                   code                                 shape (batch-first)
======================  ==================================  ==========================
h^i (Lansdell)          ``hs[i]``                            (n, d_i)
c_h                     ``NP.c_h``, ``c_h``                  scalar
ξ^i                     ``xis[i−1]``                         (n, d_i)
L̃, L                   ``loss_noisy``, ``loss_clean``       (n,)
λ̂^i                    ``np_estimator(...)``                (n, d_i)
ẽ^{i+1} = ∂L/∂a         ``−deltas[i]``                       (n, d_{i+1})
B^{i+1}                 ``R_{i+1}ᵀ`` = ``Rs[i]ᵀ``            R: (d_i, d_{i+1})
A, B (Cameron)          ``W_l``, ``R_l``                     (d_l, d_{l−1}), (d_{l−1}, d_l)
x, h, x̂, ĥ             ``x, h, xhat, hhat``                 (n, d_{l−1}), (n, d_l), …
e = h_L − h_L*          ``−δ_L``                             (n, d_L)
W_i⁺                    ``R_i`` (rf) / ``pinv(W_i)`` (rf-exact)
======================  ==================================  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._array import ops
from ._validate import check_choice, check_range
from .losses import Loss
from .network import forward, output_signal, teaching_signals
from .rules import ActivityLearnedFeedback, Rule, register_rule
from .transfers import get_transfer

__all__ = [
    "NP", "RF", "RFExact",
    "np_estimator", "np_target", "ls_increment", "ls_step", "ls_closed_form", "noisy_forward",
    "np_feedback_increments",
    "recirculation_phases", "recirculation_increments", "recirculation_step", "rf_feedback_increments",
    "rf_closed_form_signal", "mp_residuals", "rel_error",
]


# ---------------------------------------------------------------------------------------------------
# small helpers (numpy or torch)
# ---------------------------------------------------------------------------------------------------


def _fro(a) -> float:
    return float((a * a).sum()) ** 0.5


def rel_error(a, b) -> float:
    """``‖a − b‖_F / ‖b‖_F`` (Lansdell Fig. 1A's relative error with b = W)."""
    nb = _fro(b)
    return _fro(a - b) / nb if nb > 0 else float("nan")


# ---------------------------------------------------------------------------------------------------
# node perturbation: estimator and least squares (Lansdell §2, §3.1, Suppl. eq. 3–5, 9)
# ---------------------------------------------------------------------------------------------------


def np_estimator(loss_noisy, loss_clean, xi, c_h: float):
    """λ̂ = (L̃ − L) ξ / c_h (Suppl. eq. 3), per example: (n,), (n,), (n, d) → (n, d).

    ``xi`` is the *standard* normal draw (the perturbation is ``c_h ξ``).  λ̂ estimates ∂L/∂h
    (Lansdell's sign); :func:`np_target` gives our −∂L/∂h.
    """
    return ((loss_noisy - loss_clean) / c_h)[:, None] * xi


def np_target(loss_noisy, loss_clean, xi, c_h: float):
    """The regression target in our convention: ``t = −λ̂`` ≈ ``−∂L/∂h``, the signal ``propagate``
    should deliver to layer l−1 before the gate."""
    return -np_estimator(loss_noisy, loss_clean, xi, c_h)


def ls_increment(R, delta, target, ridge: float = 0.0):
    """Batch-mean descent direction of ``½⟨‖R δ − t‖²⟩ + ½ ridge ‖R‖²`` (Suppl. eq. 4):

    ``ΔR = ⟨(t − R δ) δᵀ⟩ − ridge R``  with R (d_{l−1}, d_l), δ (n, d_l), t (n, d_{l−1}).
    In Lansdell's symbols ``R = Bᵀ``, ``δ = −ẽ``, ``t = −λ̂`` — the objective is unchanged.
    """
    n = delta.shape[0]
    inc = (target - delta @ R.T).T @ delta / n
    return inc - ridge * R if ridge else inc


def ls_step(R, delta, target, lr: float, ridge: float = 0.0):
    """One SGD step of the least-squares problem: ``R + lr · ls_increment(R, δ, t, ridge)``."""
    return R + lr * ls_increment(R, delta, target, ridge)


def ls_closed_form(delta, target, ridge: float = 0.0):
    """The least-squares solution (Suppl. eq. 5/9): ``R = (tᵀδ)(δᵀδ + n·ridge·I)⁻¹``.

    Equals Lansdell's ``(B̂)ᵀ = λ̂ ẽᵀ(ẽẽᵀ)⁻¹`` (both signs flip).  The minimiser of the same
    objective that :func:`ls_increment` descends.
    """
    o = ops(delta)
    n, d = delta.shape
    G = delta.T @ delta + (n * ridge) * o.eye(d, delta)
    C = target.T @ delta  # (d_prev, d)
    return o.solve(G, C.T).T  # G symmetric: C G⁻¹ = (G⁻¹ Cᵀ)ᵀ


def noisy_forward(Ws, bs, x, transfers, xis, c_h: float):
    """Forward pass with ``h̃_l = g(a_l) + c_h ξ_l`` on every hidden layer (Lansdell §2); the output
    layer is noise-free.  ``xis[l−1]`` is the standard-normal draw for hidden layer l (n, d_l)."""
    transfers = [get_transfer(t) for t in transfers]
    h = x
    L = len(Ws)
    for l, (W, g) in enumerate(zip(Ws, transfers)):
        a = h @ W.T
        if bs is not None and bs[l] is not None:
            a = a + bs[l]
        h = g(a)
        if l < L - 1:
            h = h + c_h * xis[l]
    return h


def np_feedback_increments(rule: "NP", Ws, bs, Rs, x, target, transfers, loss: Loss, xis):
    """Network-level NP reference: one clean pass, one noisy pass, λ̂ and the LS increments.

    Returns ``(incs, info)`` with ``incs[l]`` the batch-mean ``ΔR`` for layer l (0-based list;
    ``None`` for the first layer, whose feedback would need noise on the input) and ``info`` holding
    the clean forward, the synthetic teaching signals ``deltas``, the per-example losses and the
    targets ``t_{l−1} = −λ̂_{l−1}``.  Works on numpy arrays and torch tensors alike; ``xis`` are the
    standard-normal draws, one (n, d_l) array per hidden layer.
    """
    fwd = forward(Ws, bs, x, transfers)
    dL = output_signal(loss, fwd, target, transfers[-1])
    deltas = teaching_signals(rule, Ws, Rs, fwd, dL, transfers)
    L_clean = loss.value(fwd.output, target)
    L_noisy = loss.value(noisy_forward(Ws, bs, x, transfers, xis, rule.c_h), target)
    incs, targets = [None] * len(Ws), [None] * len(Ws)
    for l in range(1, len(Ws)):
        t = np_target(L_noisy, L_clean, xis[l - 1], rule.c_h)
        regressor = dL if rule.mode == "direct" else deltas[l]
        incs[l] = ls_increment(Rs[l], regressor, t, rule.ridge)
        targets[l] = t
    return incs, {"forward": fwd, "deltas": deltas, "loss_clean": L_clean, "loss_noisy": L_noisy,
                  "targets": targets}


# ---------------------------------------------------------------------------------------------------
# recirculation and the pseudoinverse (Cameron et al. poster)
# ---------------------------------------------------------------------------------------------------


def recirculation_phases(A, B, x):
    """The three phases, batch-first: ``h = A x``, ``x̂ = B h``, ``ĥ = A x̂`` → (h, x̂, ĥ)."""
    h = x @ A.T
    xhat = h @ B.T
    hhat = xhat @ A.T
    return h, xhat, hhat


def recirculation_increments(A, B, x):
    """Batch-mean ``ΔA = ⟨(h − ĥ) xᵀ⟩`` and ``ΔB = ⟨(x − x̂) hᵀ⟩`` (poster, "Learning rules")."""
    n = x.shape[0]
    h, xhat, hhat = recirculation_phases(A, B, x)
    return (h - hhat).T @ x / n, (x - xhat).T @ h / n


def recirculation_step(A, B, x, lr_A: float, lr_B: float, decay: float = 0.0):
    """``A + lr_A ΔA``, ``B + lr_B (ΔB − decay·B)`` for one batch of noise ``x`` (n, d_in)."""
    dA, dB = recirculation_increments(A, B, x)
    if decay:
        dB = dB - decay * B
    return A + lr_A * dA, B + lr_B * dB


def rf_feedback_increments(rule: "RF", Ws, Rs, xis):
    """ΔR_l (and, if ``rule.forward_recirculation``, ΔW_l) from one recirculation with noise
    ``x = σ ξ_l`` at the input of each layer; ``xis[l]`` is a standard-normal (m, d_{l−1}) draw.

    Returns ``(dRs, dWs)`` (lists; ``dWs`` entries ``None`` unless forward recirculation is on).
    """
    dRs, dWs = [], []
    for W, R, xi in zip(Ws, Rs, xis):
        if R is None or xi is None:
            dRs.append(None)
            dWs.append(None)
            continue
        dA, dB = recirculation_increments(W, R, rule.noise_std * xi)
        dRs.append(dB - rule.decay * R if rule.decay else dB)
        dWs.append(dA if rule.forward_recirculation else None)
    return dRs, dWs


def rf_closed_form_signal(Ws, e, l: int):
    """``(Π_{i=l+1}^{L} W_i⁺) e`` batch-first (poster's RF rule), for 1-based layer l (0 … L).

    ``e`` (n, d_L); returns (n, d_l).  For a linear network this is rf-exact's δ_l.
    """
    o = ops(e)
    s = e
    for W in reversed(Ws[l:]):  # W_L⁺ first
        s = s @ o.pinv(W).T
    return s


def mp_residuals(A, X) -> dict:
    """Relative residuals of the four Moore–Penrose conditions for ``X ≈ A⁺``:

    ``AXA = A``, ``XAX = X``, ``(AX)ᵀ = AX``, ``(XA)ᵀ = XA`` → ``‖lhs − rhs‖_F / ‖rhs‖_F``.
    """
    AX, XA = A @ X, X @ A
    return {
        "axa": rel_error(AX @ A, A),
        "xax": rel_error(XA @ X, X),
        "ax_sym": rel_error(AX.T, AX),
        "xa_sym": rel_error(XA.T, XA),
    }


# ---------------------------------------------------------------------------------------------------
# the rule specs
# ---------------------------------------------------------------------------------------------------


def _as_bool(name, v) -> bool:
    """True/False, 1/0, or the strings 'true'/'false'/'1'/'0' (command-line values)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
        return v.strip().lower() in ("true", "1")
    raise ValueError(f"{name} must be True or False, got {v!r}")


def _positive_int(name, v, lo=1):
    f = check_range(name, v, lo, None)
    if f != int(f):
        raise ValueError(f"{name} must be an integer ≥ {lo}, got {v!r}")
    return int(f)


@register_rule
@dataclass(frozen=True)
class NP(Rule, ActivityLearnedFeedback):
    """Node-perturbation-learned feedback (Lansdell 2019): ``propagate = δ_l R_lᵀ`` (layerwise) or
    ``δ_L R_lᵀ`` (direct), R learned by stochastic least squares toward ``−λ̂`` each minibatch.

    Parameters
    ----------
    c_h : noise standard deviation, > 0 (Lansdell's c_h; Fig. 1 varies it).
    feedback_lr : η_B / η — R's learning rate as a multiple of the weights' (the torch engine sets
        ``R.grad = −feedback_lr · ΔR`` so the optimizer moves R by ``lr · feedback_lr · ΔR``), ≥ 0.
    ridge : L2 penalty of the least-squares problem, ≥ 0.
    mode : ``'layerwise'`` (Lansdell §3.1, ``B^{i+1}ᵀ ẽ^{i+1}``) or ``'direct'`` (§3.3, ``B^{i+1}ᵀ ẽ^{N+1}``).
    n_samples : noisy passes per minibatch (their increments averaged), ≥ 1; Lansdell uses 1.
    seed : seed of the noise stream the torch engine draws ξ from.
    """

    c_h: float = 0.01
    feedback_lr: float = 1.0
    ridge: float = 0.0
    mode: str = "layerwise"
    n_samples: int = 1
    seed: int = 0
    name: ClassVar[str] = "np"
    feedback: ClassVar[str] = "learned"

    def __post_init__(self):
        object.__setattr__(self, "c_h", check_range("c_h", self.c_h, 0.0, None, lo_open=True))
        object.__setattr__(self, "feedback_lr", check_range("feedback_lr", self.feedback_lr, 0.0, None))
        object.__setattr__(self, "ridge", check_range("ridge", self.ridge, 0.0, None))
        object.__setattr__(self, "mode", check_choice("mode", self.mode, ("layerwise", "direct")))
        object.__setattr__(self, "n_samples", _positive_int("n_samples", self.n_samples))
        object.__setattr__(self, "seed", _positive_int("seed", self.seed, 0))
        # per-instance override of the ClassVar: R_l is (d_{l−1}, d_L) in direct mode
        object.__setattr__(self, "direct", self.mode == "direct")

    def operator(self, W, R):
        if self.direct:
            raise ValueError("np in direct mode is not layer-local; use propagate(..., delta_out=...)")
        return R

    def propagate(self, W, R, delta, *, delta_out=None):
        if self.direct:
            if delta_out is None:
                raise ValueError("np (mode='direct') needs the output teaching signal delta_out")
            return delta_out @ R.T
        return delta @ R.T

    def feedback_increment(self, delta, h_prev):
        return None  # learned from the noisy pass: see np_feedback_increments / bridge.learned_feedback

    def increment(self, R, delta, target):
        """ΔR for one batch: :func:`ls_increment` with this rule's ridge."""
        return ls_increment(R, delta, target, self.ridge)


@register_rule
@dataclass(frozen=True)
class RF(Rule, ActivityLearnedFeedback):
    """Reciprocal feedback (Cameron et al.): ``propagate = δ_l R_lᵀ`` with ``R_l ≈ W_l⁺`` learned by
    noise-driven recirculation ``ΔR = (x − x̂)hᵀ`` (A = W_l, B = R_l).

    Parameters
    ----------
    noise_std : σ of the mean-zero Gaussian noise driving recirculation at each layer, > 0.
    feedback_lr : η_B / η, as for :class:`NP`, ≥ 0.
    n_noise : noise samples per minibatch (the increment is their mean), ≥ 1.
    decay : ridge term λ ≥ 0 on R (``ΔR −= λR``); needed only for expanding layers.
    forward_recirculation : also apply ``ΔA = (h − ĥ)xᵀ`` to W (default ``False``: W learns the task only).
    seed : seed of the noise stream the torch engine draws from.
    """

    noise_std: float = 1.0
    feedback_lr: float = 1.0
    n_noise: int = 32
    decay: float = 0.0
    forward_recirculation: bool = False
    seed: int = 0
    name: ClassVar[str] = "rf"
    feedback: ClassVar[str] = "learned"

    def __post_init__(self):
        object.__setattr__(self, "noise_std", check_range("noise_std", self.noise_std, 0.0, None, lo_open=True))
        object.__setattr__(self, "feedback_lr", check_range("feedback_lr", self.feedback_lr, 0.0, None))
        object.__setattr__(self, "n_noise", _positive_int("n_noise", self.n_noise))
        object.__setattr__(self, "decay", check_range("decay", self.decay, 0.0, None))
        object.__setattr__(self, "forward_recirculation", _as_bool("forward_recirculation", self.forward_recirculation))
        object.__setattr__(self, "seed", _positive_int("seed", self.seed, 0))

    def operator(self, W, R):
        return R

    def propagate(self, W, R, delta, *, delta_out=None):
        return delta @ R.T

    def feedback_increment(self, delta, h_prev):
        return None  # learned by recirculation: see rf_feedback_increments / bridge.learned_feedback


@register_rule
@dataclass(frozen=True)
class RFExact(Rule):
    """RF with the exact pseudoinverse (control): ``propagate = δ_l (W_l⁺)ᵀ``, i.e. the poster's
    ``δW_l = (Π_{i>l} W_i⁺) e h_{l−1}ᵀ`` — the same operator as pseudobackprop."""

    name: ClassVar[str] = "rf-exact"
    feedback: ClassVar[str] = "transpose"

    def operator(self, W, R=None):
        return ops(W).pinv(W)

    def propagate(self, W, R, delta, *, delta_out=None):
        return delta @ self.operator(W).T
