"""Amit (2021): the local circuits of Appendix 1 and the online URFB schedule, as matrix math.

These are the *matrix twins* of the Brian2 circuits in :mod:`circuits.amit`: the same discrete
maps, the same boundaries, the same order of operations, written as plain functions of arrays.
Nothing here imports Brian2 or torch.

Symbol table (paper → code)
---------------------------
====================  =====================  =============================================
paper                 code                   meaning
====================  =====================  =============================================
h_c = ⟨W_c, x⟩        ``h``                  feed-forward input of output unit c (= a_L)
s_c                   ``s``                  supervisory unit: +1 presented class, −1 else
δ_c                   ``delta``              output unit (top teaching signal, eq. 6)
t_c                   ``tc``                 control unit of δ_c (``t`` is Brian2's time)
H_c                   ``H``                  full input of δ_c: h + 2M s − 2M t
M, S, μ, ε            ``M, S, mu, epsilon``  bound on |h|, learning threshold, wrong-class
                                             weight, overshoot of σ_δ
u_{l,i}, v_{l,i}      ``u, v``               control units of the feedback shut-down
K                     ``K``                  bound on the top-down feedback |δ|
ε (§3.1, URFB)        ``epsilon`` (rule)     fraction of the Hebbian increment given to R
====================  =====================  =============================================

Output error circuit (Appendix 1, Fig. 13–14)
---------------------------------------------
``H = h + 2M s − 2M t``,  ``δ = σ_δ(H)``,  ``t = σ_t(δ)``, updated alternately (δ, then t, then
δ, …) starting from ``t = 0``.  Boundaries (chosen so that the read signal equals eq. 6 exactly,
see :func:`read_output_signal`)::

    σ_δ(H) = 1 + ε    if H > 2M + S              σ_t(δ) = 1   if δ > 1
             1        if M < H ≤ 2M + S                   0   if −μ ≤ δ ≤ 1
             0        if −M ≤ H ≤ M                       −1  if δ < −μ
             −μ       if −2M − S ≤ H < −M
             −μ − ε   if H < −2M − S

The paper writes both ``[M, 2M+S]`` and ``[−M, M]`` as closed; the shared points ±M are never
reached when |h| < M (see below), and are given to the 0 band here.  The boundaries that matter
are 2M+S (→ 1, so h = S learns, eq. 6's "≤ 1"), −2M−S (→ −μ, eq. 6's "≥ −1") and σ_t's
closed [−μ, 1] (so the values 1 and −μ leave t silent).

**h must lie in the open interval (−M, M)** (the paper says [−M, M]).  With the paper's gains
no choice of the value at H = M works for both endpoints: for s = +1, h = −M gives H = M in the
first half-cycle, which must read 1 (eq. 6: −M ≤ 1); for s = +1, h = M > S gives H = M after t
switched to 1, which must be 0 (otherwise δ alternates 1+ε ↔ 1, never visits 0 and the synapse
keeps learning).  Symmetrically for s = −1 at H = −M.  So the endpoints are excluded and checked.

Reading rule (the learning signal of the circuit)
-------------------------------------------------
**The learning signal is δ_c read in the half-cycle in which t_c has just been updated from it,
and vetoed while t_c is active:**  ``e = δ·1[t = 0]`` with ``t = σ_t(δ)``.  Biologically: the
control neuron t_c, which fires exactly when δ_c overshoots, blocks plasticity at (and feedback
from) δ_c; the synapses onto δ_c change by ``η x_i e`` only while t_c is silent.  See
:func:`read_output_signal` for the proof that ``e`` equals eq. 6 in *every* cycle.

Feedback shut-down circuit (eq. 3 and Appendix 1)
-------------------------------------------------
``u = 1[x ≥ 1]``, ``v = −1[x ≤ −1]`` from the feed-forward activity ``x = σ(a)``;
``δ̃ = σ_K(δ − 2K u + 2K v)`` with ``σ_K(z) = z if z ≥ −K else 0``.  Note that v carries its
minus sign (v = −1 when active), so ``−2Ku + 2Kv = −2K·1[|x| ≥ 1]``: *both* controls push the
input down below the pass band — the construction has no sign error.  Its one flaw is the
boundary: the paper assumes δ ∈ [−K, K], but at δ = K with a control active
``z = K − 2K = −K`` still passes (``−K ≥ −K``) and δ̃ = −K ≠ 0.  The exact condition under
which the circuit equals eq. 3 for every gate state is **−K ≤ δ < K**; it is checked
(:func:`check_feedback_bound`, and in the Brian2 circuits by a counter unit), not assumed.
The gate is ``1[|a| < 1]`` (eq. 3 and the control units shut down *at* |x| = 1), as in
:mod:`plasticity.transfers`; Remark 2's "σ'(h) = 1 if |h| ≤ 1" disagrees only at |h| = 1.

Online URFB schedule (Remark 1, Fig. 2 and Fig. 15)
----------------------------------------------------
Fig. 15: "First weights connecting unit x_{2,2} to layer above get updated based on the value of
x_{2,2}. Second the activation of u_{2,2} and v_{2,2} is triggered. Third the computation of δ_{2,2}
is performed in terms of δ_{3,k} and R_{3,2k}".  The paper therefore computes δ_{l−1} with the
*already updated* R_l (``feedback_order='after_update'``, the default here):

    for l = L … 1:   W_l += η δ_l x_{l−1}ᵀ;   R_l += ε η x_{l−1} δ_lᵀ;
                     δ_{l−1} = σ'(h_{l−1}) ∘ (R_l δ_l)            (R_l the new value)

``feedback_order='before_update'`` computes all δ with the old R first, which is exactly
:func:`plasticity.network.sgd_step` with batch size 1.  The two differ by
``ε η (m ∘ x_{l−1} δ_lᵀ) δ_l`` in the carried signal (``m`` the feedback mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import check_choice, check_range, check_sizes
from .connectivity import random_mask
from .losses import Hinge
from .network import forward, output_signal, sgd_step
from .rules import URFB
from .transfers import get_transfer

FEEDBACK_ORDERS = ("after_update", "before_update")


# --------------------------------------------------------------------------------------------
# Output error circuit (Appendix 1, Fig. 13–14)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputErrorParams:
    """Parameters of the output error circuit (Appendix 1).

    ``M`` > 0: bound on the feed-forward input, |h| < M (open, see the module docstring);
    ``S`` > 0: learning threshold (eq. 6 has S = 1); ``mu`` ∈ (0, 1]: wrong-class value;
    ``epsilon`` > 0: overshoot of σ_δ that drives the control unit.  Powers of two for M keep
    ``h + 2M s`` exact for more inputs (see :meth:`check_h`).
    """

    M: float = 1024.0
    S: float = 1.0
    mu: float = 1.0
    epsilon: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "M", check_range("M", self.M, 0.0, None, lo_open=True))
        object.__setattr__(self, "S", check_range("S", self.S, 0.0, None, lo_open=True))
        object.__setattr__(self, "mu", check_range("mu", self.mu, 0.0, 1.0, lo_open=True))
        object.__setattr__(self, "epsilon", check_range("epsilon", self.epsilon, 0.0, None, lo_open=True))
        if not np.isfinite(self.M) or not np.isfinite(self.S) or not np.isfinite(self.epsilon):
            raise ValueError("M, S and epsilon must be finite")

    def check_h(self, h) -> np.ndarray:
        """Return ``h`` as float64 or raise ``ValueError`` unless every entry lies in (−M, M)."""
        h = np.asarray(h, dtype=np.float64)
        if not np.all(np.isfinite(h)):
            raise ValueError("h must be finite")
        if h.size and np.max(np.abs(h)) >= self.M:
            raise ValueError(
                f"h must lie in the open interval (-M, M) = ({-self.M:g}, {self.M:g}) for the output error "
                f"circuit to compute eq. 6; got max|h| = {np.max(np.abs(h)):g} (increase M)"
            )
        return h

    def namespace(self) -> dict:
        """The Brian2 names of these parameters (σ_δ's ε is ``eps_delta`` there)."""
        return {"M": self.M, "S": self.S, "mu": self.mu, "eps_delta": self.epsilon}


def supervisory(labels, n_classes: int) -> np.ndarray:
    """``s`` (n, C): +1 for the presented class, −1 for every other class (Appendix 1)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be a 1-d integer array of class indices")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes - 1}], got range [{labels.min()}, {labels.max()}]")
    s = -np.ones((labels.size, n_classes))
    s[np.arange(labels.size), labels] = 1.0
    return s


def sigma_delta(H, p: OutputErrorParams):
    """The 5-piece transfer of δ_c (Fig. 13 left) with the boundaries of the module docstring."""
    H = np.asarray(H, dtype=np.float64)
    M, S, mu, eps = p.M, p.S, p.mu, p.epsilon
    return np.select(
        [H > 2 * M + S, H > M, H >= -M, H >= -2 * M - S],
        [1.0 + eps, 1.0, 0.0, -mu],
        default=-mu - eps,
    )


def sigma_t(x, mu: float):
    """Transfer of the control unit t_c (Fig. 13 right): 1 if x > 1, 0 on [−μ, 1], −1 if x < −μ."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 1.0, 1.0, np.where(x < -mu, -1.0, 0.0))


def read_output_signal(delta, tc):
    """The reading rule: ``e = δ·1[t = 0]``, read after t has been updated from this δ.

    Claim: with t₀ = 0 and the alternating updates δ⁽ⁿ⁾ = σ_δ(h + 2Ms − 2M t⁽ⁿ⁻¹⁾),
    t⁽ⁿ⁾ = σ_t(δ⁽ⁿ⁾), the read ``e⁽ⁿ⁾ = δ⁽ⁿ⁾·1[t⁽ⁿ⁾ = 0]`` equals eq. 6 (generalised to the
    threshold S) for every cycle n ≥ 1 and every h ∈ (−M, M):

        e = 1 if s = +1 and h ≤ S;  −μ if s = −1 and h ≥ −S;  0 otherwise.

    Proof.  σ_t(δ) = 0 ⟺ δ ∈ [−μ, 1]; of σ_δ's five values 1, 0, −μ lie there and 1+ε, −μ−ε do
    not, so ``e = δ`` for δ ∈ {1, 0, −μ} and ``e = 0`` for the overshoots.
    (s = +1, h ≤ S)  t = 0 gives H = h + 2M ∈ (M, 2M+S] → δ = 1 → t = σ_t(1) = 0 (1 ≤ 1):
      a fixed point, every cycle reads e = 1 (the boundary h = S gives H = 2M + S → 1).
    (s = +1, h > S)  t = 0: H ∈ (2M+S, 3M) → δ = 1+ε → t = 1 → e = 0; t = 1: H = h ∈ (S, M)
      ⊂ [−M, M] → δ = 0 → t = 0 → e = 0; the cycle repeats (period 2 cycles), every read is 0.
    (s = −1, h ≥ −S) t = 0: H = h − 2M ∈ [−2M−S, −M) → δ = −μ → t = σ_t(−μ) = 0 (−μ ≥ −μ):
      fixed point, e = −μ every cycle.
    (s = −1, h < −S) t = 0: H < −2M−S → δ = −μ−ε → t = −1 → e = 0; t = −1: H = h ∈ (−M, −S)
      → δ = 0 → t = 0 → e = 0; repeats, every read is 0.
    With S = 1 these are eq. 6 (``Hinge(mu).teaching(h, label)``), thresholds included.  ∎

    In floating point the sums h + 2Ms (± 2M t) are rounded: the result is exact for every h
    whose distance to ±S and ±M exceeds ulp(3M) (and for all the boundary values, which are
    representable together with their sums when M is a power of two).
    """
    delta = np.asarray(delta, dtype=np.float64)
    return delta * (np.asarray(tc) == 0.0)


@dataclass
class OutputErrorTrace:
    """Half-cycle traces of the output error circuit, each (2·n_cycles, n, C).

    Half-step k = 0, 2, 4, … updates δ; k = 1, 3, … updates t and the read e.  Values are those
    *after* the update of half-step k.  ``signal`` (n, C) is the read of the last cycle.
    """

    delta: np.ndarray
    tc: np.ndarray
    read: np.ndarray
    signal: np.ndarray

    def reads(self) -> np.ndarray:
        """The read at the end of every cycle, (n_cycles, n, C)."""
        return self.read[1::2]


def output_error_twin(h, labels, p: OutputErrorParams, n_cycles: int = 4) -> OutputErrorTrace:
    """Matrix twin of :func:`circuits.amit.output_error_signal`: the same alternating map in numpy."""
    h = p.check_h(h)
    if h.ndim != 2:
        raise ValueError(f"h must be (n, C), got shape {h.shape}")
    n_cycles = int(n_cycles)
    if n_cycles < 1:
        raise ValueError(f"n_cycles must be ≥ 1, got {n_cycles}")
    s = supervisory(labels, h.shape[1])
    if s.shape[0] != h.shape[0]:
        raise ValueError(f"need one label per row of h: {s.shape[0]} labels for {h.shape[0]} rows")
    tc = np.zeros_like(h)
    delta = np.zeros_like(h)
    e = np.zeros_like(h)
    D, T, E = [], [], []
    for _ in range(n_cycles):
        delta = sigma_delta(h + 2 * p.M * s - 2 * p.M * tc, p)
        D.append(delta), T.append(tc), E.append(e)
        tc = sigma_t(delta, p.mu)
        e = read_output_signal(delta, tc)
        D.append(delta), T.append(tc), E.append(e)
    return OutputErrorTrace(np.array(D), np.array(T), np.array(E), e.copy())


def hinge_signal(h, labels, mu: float = 1.0, S: float = 1.0) -> np.ndarray:
    """Eq. 6 with threshold S: 1 if class and h ≤ S; −μ if not class and h ≥ −S; else 0.

    For S = 1 this is ``Hinge(mu).teaching(h, labels)``.
    """
    h = np.asarray(h, dtype=np.float64)
    if S == 1.0:
        return Hinge(mu).teaching(h, np.asarray(labels))
    t = supervisory(labels, h.shape[1]) > 0
    return np.where(t, (h <= S) * 1.0, -mu * (h >= -S))


# --------------------------------------------------------------------------------------------
# Feedback shut-down (eq. 3, Appendix 1)
# --------------------------------------------------------------------------------------------


def feedback_bound_violations(delta, K: float) -> np.ndarray:
    """Boolean mask of entries where the shut-down circuit may differ from eq. 3.

    The circuit is exact iff ``δ ≥ −K`` and the shut-down input ``δ − 2K`` lands below −K *as
    computed in floating point*: that is δ < K, except within one rounding of K (for
    δ = nextafter(K, 0), ``δ − 2K`` rounds to exactly −K and would pass the gate).
    """
    delta = np.asarray(delta, dtype=np.float64)
    return ~((delta >= -K) & (delta - 2.0 * K < -K))


def check_feedback_bound(delta, K: float) -> None:
    """Raise ``ValueError`` unless −K ≤ δ < K (in float arithmetic) for every entry, the circuit's
    exactness condition (see :func:`feedback_bound_violations`)."""
    K = check_range("K", K, 0.0, None, lo_open=True)
    bad = feedback_bound_violations(delta, K)
    if np.any(bad):
        worst = float(np.max(np.abs(np.asarray(delta, dtype=np.float64)[bad])))
        raise ValueError(
            f"feedback bound violated: the shut-down circuit equals eq. 3 only for -K <= delta < K "
            f"(K = {K:g}); {int(bad.sum())} entries outside, max|delta| = {worst:g} (increase K)"
        )


def shutdown_twin(delta, a, K: float):
    """Matrix twin of the shut-down circuit: returns ``(gated, u, v)``.

    ``x = clip(a, −1, 1)``, ``u = 1[x ≥ 1]``, ``v = −1[x ≤ −1]``,
    ``z = δ − 2K u + 2K v``, ``δ̃ = z if z ≥ −K else 0``.  Equals
    ``get_transfer('satlin').gate(a) * delta`` whenever −K ≤ δ < K.
    """
    delta = np.asarray(delta, dtype=np.float64)
    x = np.clip(np.asarray(a, dtype=np.float64), -1.0, 1.0)
    u = (x >= 1.0) * 1.0
    v = -((x <= -1.0) * 1.0)
    z = delta - 2 * K * u + 2 * K * v
    return z * (z >= -K), u, v


# --------------------------------------------------------------------------------------------
# Mirrored Hebbian increments and the online layered schedule
# --------------------------------------------------------------------------------------------


def mirrored_update(W, R, x_pre, delta_post, eta: float, epsilon: float, wmask=None, rmask=None):
    """One mirrored Hebbian step: ``W += η (m_W ∘ δ xᵀ)``, ``R += η (m_R ∘ ε x δᵀ)`` (one example)."""
    x_pre = np.asarray(x_pre, dtype=np.float64).reshape(1, -1)
    delta_post = np.asarray(delta_post, dtype=np.float64).reshape(1, -1)
    dW = delta_post.T @ x_pre
    if wmask is not None:
        dW = dW * wmask
    dR = epsilon * (x_pre.T @ delta_post)
    if rmask is not None:
        dR = dR * rmask
    return W + eta * dW, R + eta * dR


def default_transfers(n_layers: int) -> list[str]:
    """Amit's nets here: saturated-linear hidden layers, linear output (§3.1)."""
    return ["satlin"] * (n_layers - 1) + ["linear"]


def random_init(sizes, rng: np.random.Generator, scale: float = 1.0, sparsity: float | None = None):
    """Independent random ``Ws`` (d_l, d_{l−1}) and ``Rs`` (d_{l−1}, d_l), N(0, scale²/fan_in).

    With ``sparsity`` (e.g. 0.5, Amit §4) also draws separate masks for W and R and zeroes the
    masked entries; returns ``(Ws, Rs, wmasks, rmasks)`` (masks ``None`` without sparsity).
    """
    sizes = check_sizes(sizes)
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (randomness is always explicit)")
    Ws, Rs = [], []
    for d_prev, d in zip(sizes[:-1], sizes[1:]):
        Ws.append(rng.standard_normal((d, d_prev)) * scale / np.sqrt(d_prev))
        Rs.append(rng.standard_normal((d_prev, d)) * scale / np.sqrt(d))
    if sparsity is None:
        return Ws, Rs, None, None
    wmasks = [random_mask(W.shape, sparsity, rng) for W in Ws]
    rmasks = [random_mask(R.shape, sparsity, rng) for R in Rs]
    return [W * m for W, m in zip(Ws, wmasks)], [R * m for R, m in zip(Rs, rmasks)], wmasks, rmasks


def urfb_online_step(Ws, Rs, x, label, *, eta: float, epsilon: float = 1.0, mu: float = 1.0,
                     wmasks=None, rmasks=None, feedback_order: str = "after_update", transfers=None):
    """One online (batch-1) URFB step with the hinge signal (eq. 6); returns ``(Ws, Rs, deltas, fwd)``.

    ``feedback_order='after_update'`` is the order of Fig. 15 (δ_{l−1} from the updated R_l);
    ``'before_update'`` is exactly ``sgd_step(URFB(epsilon), …, lr=eta)`` for one example.
    ``x`` is (d_0,) or (1, d_0); ``label`` an int.
    """
    check_choice("feedback_order", feedback_order, FEEDBACK_ORDERS)
    rule = URFB(epsilon)
    transfers = default_transfers(len(Ws)) if transfers is None else list(transfers)
    x = np.asarray(x, dtype=np.float64).reshape(1, -1)
    target = np.array([int(label)])
    loss = Hinge(mu)
    if feedback_order == "before_update":
        Ws, _, Rs, fwd, deltas = sgd_step(rule, Ws, None, Rs, x, target, transfers, loss, eta,
                                          masks=wmasks, rmasks=rmasks)
        return Ws, Rs, deltas, fwd
    fwd = forward(Ws, None, x, transfers)
    gates = [get_transfer(t).gate for t in transfers]
    L = len(Ws)
    deltas = [None] * L
    deltas[-1] = output_signal(loss, fwd, target, transfers[-1])
    new_W, new_R = list(Ws), list(Rs)
    for l in range(L - 1, -1, -1):  # 0-based: W[l] connects layer l to layer l+1
        d, h = deltas[l], fwd.hs[l]
        dW = d.T @ h
        if wmasks is not None and wmasks[l] is not None:
            dW = dW * wmasks[l]
        new_W[l] = Ws[l] + eta * dW
        inc = rule.feedback_increment(d, h)
        if rmasks is not None and rmasks[l] is not None:
            inc = inc * rmasks[l]
        new_R[l] = Rs[l] + eta * inc
        if l > 0:  # Fig. 15: third, δ_{l−1} from δ_l and the updated R_l, gated by u, v
            deltas[l - 1] = gates[l - 1](fwd.As[l - 1]) * rule.propagate(None, new_R[l], d)
    return new_W, new_R, deltas, fwd


def train_online(Ws, Rs, X, labels, *, eta: float, epsilon: float = 1.0, mu: float = 1.0,
                 wmasks=None, rmasks=None, feedback_order: str = "after_update"):
    """Matrix twin of :meth:`circuits.amit.LayeredCircuit.train`: one example at a time, in order.

    Returns ``(Ws, Rs, outputs, deltas_out)``: the final weights, the output ``h_L`` of every
    example before its update (n, C) and its top teaching signal δ_L (n, C).
    """
    Ws = [np.array(W, dtype=np.float64) for W in Ws]
    Rs = [np.array(R, dtype=np.float64) for R in Rs]
    outs, dLs = [], []
    for x, c in zip(np.asarray(X, dtype=np.float64), np.asarray(labels)):
        Ws, Rs, deltas, fwd = urfb_online_step(Ws, Rs, x, int(c), eta=eta, epsilon=epsilon, mu=mu,
                                               wmasks=wmasks, rmasks=rmasks, feedback_order=feedback_order)
        outs.append(fwd.output[0]), dLs.append(deltas[-1][0])
    C = Ws[-1].shape[0]
    return Ws, Rs, np.array(outs).reshape(-1, C), np.array(dLs).reshape(-1, C)
