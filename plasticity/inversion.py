"""Dynamic inversion (DI): error propagation as the steady state of a leaky integral controller.

Podlaski & Machens (2020), §3–4, eq. 5–16, Supplement S1–S2, S9 and Algorithms 1–3.

Single layer, controller architecture (eq. 5, 8 and 14; Algorithm 1)::

    dδ_{l−1}/dt = −δ_{l−1} + B_l u_l                                   (5)
    du_l/dt     = −α u_l + W_l g(δ_{l−1}) − δ_l                        (8), (14)

with the fixed point ``W_l g(δ_{l−1}) = δ_l + α u_l`` (eq. 15); for linear g
``δ_{l−1} = B(WB − αI)⁻¹ δ_l = (BW − αI)⁻¹ B δ_l`` — NDI's closed form (eq. 10).

Expanding-layer architecture (Supplement S1–S2)::

    dδ_{l−1}/dt = −α δ_{l−1} + B_l e_l,   e_l = δ̃_l − δ_l              (S1)
    dδ̃_l/dt     = −δ̃_l + W_l g(δ_{l−1})                                 (S2)

S1 is printed as ``−αδ + Bδ_l − Bδ̃_l = −αδ + B e_l``; the two halves differ in sign.  We use
the right-hand form ``B e_l`` with ``e_l = δ̃_l − δ_l`` (§3): it is the one whose stability
matrix is ``BW − αI`` as the Supplement states, whose fixed point is eq. 10's
``(BW − αI)⁻¹B δ_l``, and for which Tr-Init ``B = −W(0)ᵀ`` is stable, as for the controller.

What g is (eq. 14–16, §4.2)
---------------------------
``g`` is the *forward* transfer of layer l−1 (``a_l = W_l g(a_{l−1})``), applied to the error
variable δ_{l−1} itself — not to ``a_{l−1}``.  The inversion therefore carries no derivative
gate: "the derivative of the nonlinear transfer function does not need to be applied, as it
is implicitly incorporated in the inversion" (§4.2), so :class:`DI` has ``gated = False`` and the
torch engine skips the ``g'(a)`` factor.  Weights then change "as in eq. 2",
``ΔW_l ∝ −δ_l h_{l−1}ᵀ`` (paper sign).  Two consequences for an implementation:

* For nonlinear g, DI is *not* homogeneous in δ: it must run on each example's own δ at its
  true scale — not on the 1/n-scaled batch-mean gradient that autograd hands a layer.
* Signs: the paper's δ is ``∂L/∂a``; this package's is ``−∂L/∂a``.  The pure functions below
  work in the paper's sign; :meth:`DI.propagate` and :meth:`DI.reference_signals` convert
  (``δ_{l−1} = −DI(−δ_l)``), which matters only for g that are not odd (logistic, ReLU).

Chains of layers (§4.1, Algorithms 1–3)
---------------------------------------
* ``sequential`` (Alg. 1, Fig. 2A): invert layer L, then L−1 with the converged δ_{L−1} as
  target, …; each pair runs to convergence.
* ``repeat-layer`` (Alg. 2, Fig. 2B): all pairs run at once, each controller chasing the
  current (not yet converged) δ of the pair above; same fixed point as ``sequential``.
* ``single-loop`` (Alg. 3, Fig. 2C): the output controller u_L feeds δ_1 through one matrix B;
  δ_2 … δ_{L−1} follow ``dδ_k/dt = −δ_k + W_k g(δ_{k−1})``.  Here B is the product of the
  layers' feedback matrices, ``B = −(−R_2)(−R_3)…(−R_L)`` (d_1 × d_L), so Tr-Init of every R_l
  gives ``B = −(W_L ⋯ W_2)ᵀ``.

Explicit Euler, exactly as the pseudocode: **Gauss–Seidel order** — each line uses the
values already updated on the lines above it in the same step (Alg. 1: δ first, then u with
the new δ).  (The authors' released code updates u first; we follow the paper's pseudocode.)
The Brian2 twin (:mod:`circuits.controller`) schedules its populations in the same order.

Linear stability (Supplement S9): the Jacobian of (δ_{l−1}, u_l) is
``[[−I, B], [W, −αI]]``; for the S1–S2 architecture (δ_{l−1}, δ̃_l) it is
``[[−αI, B], [W, −I]]``.  Both have, for every eigenvalue μ of ``WB`` (or ``BW``),
the two eigenvalues λ with ``(λ + 1)(λ + α) = μ``, and the rest at −1 or −α —
:func:`stability` uses this when ``reduced=True``.  Smoothed spectral abscissa (SSA,
Vanbiervliet et al. 2009, as used in §7.3) optimisation of B: :func:`ssa`, :func:`stabilize`.

Symbols, paper → code
---------------------
=====================  =========================================================
paper                  code
=====================  =========================================================
δ_l (target, ∂L/∂a_l)  ``target`` / ``delta_l`` (paper sign; rows = examples)
δ_{l−1}(t)             ``delta`` (n, d_{l−1});  single loop: ``xs[0]`` … ``xs[-1]``
u_l(t)                 ``u`` (n, d_l)
δ̃_l (S2)              ``readout`` (n, d_l)
W_l                    ``W`` (d_l, d_{l−1}), as ``nn.Linear.weight``
B_l                    ``B`` = the package's ``R_l`` (d_{l−1}, d_l)
α                      ``alpha`` (leak of the controller; of δ in S1)
g                      ``g``: a :class:`plasticity.transfers.Transfer` or its name
dt, tsteps             ``dt`` (dimensionless, in units of the δ time constant), ``max_steps``
M_l (S9)               :func:`system_matrix`
=====================  =========================================================
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ._array import is_torch, ops
from ._validate import check_choice, check_range
from .rules import NDI, InitialisedFeedback, NetworkRule, Rule, register_rule
from .transfers import Transfer, get_transfer

CHAINS = ("sequential", "repeat-layer", "single-loop")
ARCHITECTURES = ("controller", "expanding")
METHODS = ("euler", "steady")
INITS = ("tr", "random")
AROUND = ("zero", "activity", "gated")
CAP_CHAINS = ("capped", "uncapped")
#: Explicit Euler of eq. 5 has the factor (1 − dt) on δ; dt ≤ 1 keeps that factor in [0, 1).
DT_MAX = 1.0


class StabilityError(RuntimeError):
    """DI dynamics diverged, or SSA optimisation could not make them stable."""


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _g(g) -> Transfer:
    if isinstance(g, Around):
        return g
    return get_transfer("linear" if g is None else g)


class Around:
    """g taken around per-example forward pre-activations ``a`` (n, d), paper sign:
    ``d ↦ g(a) − g(a − d)``, gate ``g'(a − d)``.

    In the package's sign (δ = −∂L/∂a) this is ``δ ↦ g(a + δ) − g(a)``: the controller of eq. 14
    with ``W[g(a_{l−1} + δ_{l−1}) − g(a_{l−1})]`` in place of ``W g(δ_{l−1})`` finds the change of
    layer l−1's pre-activation that moves layer l's by δ_l through the actual forward map at the
    current activity.  Its small-δ fixed point is ``B(W D B − αI)⁻¹ δ_l`` with
    ``D = diag(g'(a))`` — the derivative gate that eq. 14 (g around 0) leaves out.  Not in the
    paper: :class:`DI` ``around="activity"``.  ``rows(idx)`` restricts it to some examples.
    """

    def __init__(self, g, a, ga=None):
        self.g, self.a = _g(g), a
        self.ga = self.g(a) if ga is None else ga
        self.name = f"{self.g.name} around a"

    def __call__(self, d):
        return self.ga - self.g(self.a - d)

    def gate(self, d):
        return self.g.gate(self.a - d)

    def rows(self, idx):
        return self if idx is None else Around(self.g, self.a[idx], self.ga[idx])


def _rows_of(g, idx):
    """``g`` for the examples ``idx`` (an :class:`Around` holds per-example operating points)."""
    return g.rows(idx) if isinstance(g, Around) else g


def _sq(x):
    """Per-example squared norm, shape (n,)."""
    return (x * x).sum(-1)


def _zeros(like, d):
    """Zeros of shape (n, d) with the array type, dtype and device of ``like`` (n, ·)."""
    o = ops(like)
    if o.name == "numpy":
        return np.zeros((like.shape[0], d), dtype=like.dtype)
    return o.t.zeros((like.shape[0], d), dtype=like.dtype, device=like.device)


def _to_float(x) -> float:
    return float(x.max()) if hasattr(x, "max") else float(x)


def _check_controller_shapes(W, B, alpha, architecture):
    d_l, d_prev = W.shape
    if tuple(B.shape) != (d_prev, d_l):
        raise ValueError(f"B must have shape (d_{{l-1}}, d_l) = {(d_prev, d_l)}, got {tuple(B.shape)}")
    if alpha == 0 and architecture == "controller" and d_l > d_prev:
        raise ValueError(
            f"DI controller with alpha=0 on an expanding layer (d_l={d_l} > d_l-1={d_prev}) has no stable "
            "fixed point (WB is singular, Podlaski §3.2); use alpha > 0 or architecture='expanding' (S1-S2)")
    if alpha == 0 and architecture == "expanding" and d_l < d_prev:
        raise ValueError(
            f"DI S1-S2 architecture with alpha=0 on a contracting layer (d_l={d_l} < d_l-1={d_prev}) has no "
            "unique fixed point (BW is singular); use alpha > 0 or architecture='controller'")


# ----------------------------------------------------------------------------------------------
# one explicit-Euler step (Algorithms 1–3), paper sign
# ----------------------------------------------------------------------------------------------


def euler_step(W, B, target, delta, u, g="linear", alpha=1e-3, dt=0.1, *, architecture="controller"):
    """One step of Algorithm 1, in its order (Gauss–Seidel), batch-first.

    controller (eq. 5, 14)::

        δ ← δ + dt(−δ + B u)
        u ← u + dt(−α u + W g(δ) − δ_l)          # sees the δ just updated

    expanding (S1, S2), ``u`` holding the readout δ̃::

        δ ← δ + dt(−α δ + B (δ̃ − δ_l))
        δ̃ ← δ̃ + dt(−δ̃ + W g(δ))

    Returns ``(delta, u)``; no argument is modified.
    """
    g = _g(g)
    if architecture == "controller":
        delta = delta + dt * (-delta + u @ B.T)
        u = u + dt * (-alpha * u + g(delta) @ W.T - target)
    else:
        delta = delta + dt * (-alpha * delta + (u - target) @ B.T)
        u = u + dt * (-u + g(delta) @ W.T)
    return delta, u


def loop_euler_step(Ws, B, target, xs, u, gs, alpha=1e-3, dt=0.1):
    """One step of Algorithm 3 for any depth (Algorithm 1 when ``len(Ws) == 1``).

    ``Ws = [W_2, …, W_L]`` (bottom to top), ``xs = [δ_1, …, δ_{L−1}]``, ``gs = [g_1, …, g_{L−1}]``::

        δ_1 ← δ_1 + dt(−δ_1 + B u_L)
        δ_k ← δ_k + dt(−δ_k + W_k g_{k−1}(δ_{k−1}))     k = 2 … L−1, in order
        u_L ← u_L + dt(−α u_L + W_L g_{L−1}(δ_{L−1}) − δ_L)
    """
    xs = list(xs)
    xs[0] = xs[0] + dt * (-xs[0] + u @ B.T)
    for k in range(1, len(xs)):
        xs[k] = xs[k] + dt * (-xs[k] + _g(gs[k - 1])(xs[k - 1]) @ Ws[k - 1].T)
    u = u + dt * (-alpha * u + _g(gs[-1])(xs[-1]) @ Ws[-1].T - target)
    return xs, u


def repeat_euler_step(Ws, Bs, target, deltas, us, gs, alpha=1e-3, dt=0.1, *, architecture="controller"):
    """One step of Algorithm 2 for any depth: pairs from the top down, each in Alg. 1's order.

    ``Ws = [W_2, …, W_L]``, ``Bs = [B_2, …, B_L]``, ``deltas = [δ_1, …, δ_{L−1}]``,
    ``us = [u_2, …, u_L]``, ``gs = [g_1, …, g_{L−1}]``.  The pair of layer l uses as its target the
    value of δ_l already updated in this step (δ_L for the top pair).
    """
    deltas, us = list(deltas), list(us)
    for k in range(len(Ws) - 1, -1, -1):
        tgt = target if k == len(Ws) - 1 else deltas[k + 1]
        deltas[k], us[k] = euler_step(Ws[k], Bs[k], tgt, deltas[k], us[k], gs[k], alpha, dt,
                                      architecture=architecture)
    return deltas, us


# ----------------------------------------------------------------------------------------------
# simulation with a convergence stop
# ----------------------------------------------------------------------------------------------


@dataclass
class DISolution:
    """Result of a simulation.

    ``deltas``: the δ of every hidden population (one array for a single layer's Alg. 1);
    ``controls``: u (or δ̃); ``steps``: Euler steps taken; ``converged``: whether the relative
    change fell below ``tol``; ``trajectory``: ``{name: array (steps + 1, n, d)}`` with
    entry k the state after k steps, if ``record`` was set.
    """

    deltas: list
    controls: list
    steps: int
    converged: bool
    rel_change: float
    trajectory: dict = field(default_factory=dict)

    @property
    def delta(self):
        return self.deltas[0]

    @property
    def u(self):
        return self.controls[-1]


def _run(step, state, names, *, tol, max_steps, record, check_every=10, sq=None):
    """Iterate ``state = step(state)`` (state a flat list of arrays) with a relative-change stop.

    Every ``check_every`` steps (and at the last) the per-example relative change of the
    whole state, ``‖x_k − x_{k−1}‖ / ‖x_k‖``, is computed; the run stops when its maximum over the
    batch is ≤ ``tol`` (``tol = 0`` runs exactly ``max_steps``).  Non-finite states raise
    :class:`StabilityError`.  ``sq(i, x)``, if given, is the per-example squared norm of state
    entry ``i`` (for states held in other coordinates).
    """
    sq = sq or (lambda i, x: _sq(x))
    traj = {nm: [s] for nm, s in zip(names, state)} if record else {}
    rel, steps, converged = math.inf, 0, False
    for k in range(1, max_steps + 1):
        new = step(state)
        steps = k
        if record:
            for nm, s in zip(names, new):
                traj[nm].append(s)
        if k % check_every == 0 or k == max_steps:
            num = sum(sq(i, a - b) for i, (a, b) in enumerate(zip(new, state)))
            den = sum(sq(i, a) for i, a in enumerate(new))
            total = float(den.sum())
            if not math.isfinite(total) or total > 1e200:
                raise StabilityError(f"DI dynamics diverged after {k} steps (state norm² = {total:.3g}); "
                                     "check stability(W, B, alpha) or reduce dt")
            ratio = num / (den + 1e-300)
            rel = math.sqrt(max(_to_float(ratio), 0.0))
            state = new
            if tol > 0 and rel <= tol:
                converged = True
                break
        else:
            state = new
    if record:
        o = ops(state[0])
        stack = (lambda xs: np.stack(xs)) if o.name == "numpy" else (lambda xs: o.t.stack(xs))
        traj = {nm: stack(v) for nm, v in traj.items()}
    return state, steps, converged, rel, traj


def subspace_euler_step(W, B, target, c, u, g="linear", alpha=1e-3, dt=0.1, *, architecture="controller"):
    """:func:`euler_step` with ``δ = B c`` carried as its coordinates ``c`` (n, d_l).

    From δ(0) = 0 every δ update of Algorithm 1 adds a multiple of ``B u`` (``B(δ̃ − δ_l)`` for
    S1), so δ never leaves the column space of B and the iteration can run on ``c``::

        c ← c + dt(−c + u)                   (controller; δ ← δ + dt(−δ + B u))
        u ← u + dt(−α u + W g(B c) − δ_l)

        c ← c + dt(−α c + δ̃ − δ_l)           (expanding; δ ← δ + dt(−αδ + B(δ̃ − δ_l)))
        δ̃ ← δ̃ + dt(−δ̃ + W g(B c))

    The iterates are Algorithm 1's, exactly in exact arithmetic (float rounding differs at the
    1e-16 level); a step costs the two products with B and W and one g, with no elementwise pass
    over the d_{l−1}-wide δ.  It pays when d_l < d_{l−1} (784-1000-10's output layer: 10 vs 1000).
    """
    g = _g(g)
    if architecture == "controller":
        c = c + dt * (-c + u)
        u = u + dt * (-alpha * u + g(c @ B.T) @ W.T - target)
    else:
        c = c + dt * (-alpha * c + (u - target))
        u = u + dt * (-u + g(c @ B.T) @ W.T)
    return c, u


def simulate(W, B, delta_l, g="linear", alpha=1e-3, dt=0.1, tol=1e-8, max_steps=10000, *,
             architecture="controller", record=False, check_every=10, subspace=None) -> DISolution:
    """Algorithm 1 for one layer, batched: integrate from δ = u = 0 until the relative change of
    (δ, u) per step is ≤ ``tol`` for every example, or ``max_steps``.  ``delta_l`` is (n, d_l),
    paper sign.  ``record=True`` keeps the trajectory (``"delta"``, ``"u"``).

    ``subspace`` (default: when d_l < d_{l−1}) runs the same iterates on δ's coordinates in the
    column space of B (:func:`subspace_euler_step`); the stop then measures the change of δ as
    ``‖B Δc‖`` through the d_l × d_l Gram matrix BᵀB, so it stops at the same step.
    """
    _check_controller_shapes(W, B, alpha, architecture)
    names = ["delta", "u" if architecture == "controller" else "readout"]
    u0 = _zeros(delta_l, W.shape[0])
    if subspace is None:
        subspace = W.shape[0] < W.shape[1]
    if not subspace:
        def step(s):
            return list(euler_step(W, B, delta_l, s[0], s[1], g, alpha, dt, architecture=architecture))

        (d, u), steps, conv, rel, traj = _run(step, [_zeros(delta_l, W.shape[1]), u0], names, tol=tol,
                                              max_steps=max_steps, record=record, check_every=check_every)
        return DISolution([d], [u], steps, conv, rel, traj)

    gram = B.T @ B

    def step(s):
        return list(subspace_euler_step(W, B, delta_l, s[0], s[1], g, alpha, dt, architecture=architecture))

    def sq(i, x):  # per-example ‖·‖² of state entry i: ‖B c‖² = cᵀ(BᵀB)c for δ
        return ((x @ gram) * x).sum(-1) if i == 0 else _sq(x)

    (c, u), steps, conv, rel, traj = _run(step, [_zeros(delta_l, W.shape[0]), u0], names, tol=tol,
                                          max_steps=max_steps, record=record, check_every=check_every, sq=sq)
    if record:
        traj["delta"] = traj["delta"] @ B.T
    return DISolution([c @ B.T], [u], steps, conv, rel, traj)


def simulate_loop(Ws, B, delta_L, gs, alpha=1e-3, dt=0.1, tol=1e-8, max_steps=10000, *, record=False,
                  check_every=10) -> DISolution:
    """Algorithm 3 (single loop) for any depth; see :func:`loop_euler_step`."""
    xs = [_zeros(delta_L, W.shape[1]) for W in Ws]  # (n, d_1) … (n, d_{L−1})
    u0 = _zeros(delta_L, delta_L.shape[1])
    K = len(Ws)

    def step(s):
        xs_, u_ = loop_euler_step(Ws, B, delta_L, s[:K], s[K], gs, alpha, dt)
        return [*xs_, u_]

    names = [f"delta{k + 1}" for k in range(K)] + ["u"]
    state, steps, conv, rel, traj = _run(step, [*xs, u0], names, tol=tol, max_steps=max_steps, record=record,
                                         check_every=check_every)
    return DISolution(state[:K], [state[K]], steps, conv, rel, traj)


def simulate_repeat(Ws, Bs, delta_L, gs, alpha=1e-3, dt=0.1, tol=1e-8, max_steps=10000, *,
                    architecture="controller", record=False, check_every=10) -> DISolution:
    """Algorithm 2 (repeat layer) for any depth; see :func:`repeat_euler_step`."""
    for W, B in zip(Ws, Bs):
        _check_controller_shapes(W, B, alpha, architecture)
    deltas = [_zeros(delta_L, W.shape[1]) for W in Ws]
    us = [_zeros(delta_L, W.shape[0]) for W in Ws]
    K = len(Ws)

    def step(s):
        d_, u_ = repeat_euler_step(Ws, Bs, delta_L, s[:K], s[K:], gs, alpha, dt, architecture=architecture)
        return [*d_, *u_]

    names = [f"delta{k + 1}" for k in range(K)] + [f"u{k + 2}" for k in range(K)]
    state, steps, conv, rel, traj = _run(step, [*deltas, *us], names, tol=tol, max_steps=max_steps,
                                         record=record, check_every=check_every)
    return DISolution(state[:K], state[K:], steps, conv, rel, traj)


# ----------------------------------------------------------------------------------------------
# steady states (fixed points) solved directly
# ----------------------------------------------------------------------------------------------


def _take(x, rows):
    return x if rows is None else x[rows]


def _batched_solve(A, b):
    """Solve A x = b for A (n, d, d), b (n, d) → x (n, d)."""
    return ops(b).solve(A, b[..., None])[..., 0]


def _rows(mask):
    """Indices of the True entries of a boolean (n,) mask (numpy or torch)."""
    return mask.nonzero()[:, 0] if is_torch(mask) else np.nonzero(mask)[0]


def _row_tol(target, tol):
    """Per-example residual-norm bound (n,): ``tol`` plus 16 ulp of the example's ``‖target‖``
    (a float32 residual cannot reach 1e-12)."""
    eps = 1.2e-7 if str(target.dtype).endswith("float32") else 2.3e-16
    return (_sq(target) ** 0.5) * (16.0 * eps) + tol


def _newton(F, jacobian, target, *, tol, max_iter, what, chord_iter=30, shared=True):
    """Solve ``F(x) = target`` per example (rows of ``target``, (n, d)), starting from x = 0.

    ``F(x, rows)`` (m, d) and ``jacobian(x, rows)`` (m, d, d) act row by row on the examples
    ``rows`` (an index array, or None for all); ``tol`` bounds each example's residual norm
    ‖F(x) − target‖ (scalar or (n,)).  ``shared``: F and its Jacobian at 0 are the same for every
    example (one evaluation serves the batch); otherwise J(0) is factorised per example.

    1. **Chord** (simplified Newton): ``x ← x − J(0)⁻¹ r(x)``, with the one Jacobian at the common
       start factorised once for the batch.  A chord step costs one residual; a Newton step also
       forms and solves an n × d × d Jacobian (d + 1 times the work for the controller).  Near
       x = 0 the map is nearly linear, so for small errors the chord converges in 2–4 steps.  An
       example leaves the chord when it converges or when a step fails to halve its residual norm.
    2. **Damped Newton** on the examples the chord left: each backtracks on its own residual norm
       (halving its own step until the norm does not grow); the Jacobian is formed only at
       accepted points.

    Raises :class:`StabilityError` if a Jacobian is singular or no fixed point is reached.
    """
    o = ops(target)
    x = o.zeros_like(target)

    def residual(x, rows):
        return F(x, rows) - _take(target, rows)

    # x = 0 in every row: with ``shared`` one evaluation of F and of J serves the batch
    r = (F(x[:1], None) - target) if shared else residual(x, None)
    rn = _sq(r)
    tol2 = tol * tol + 0.0 * rn  # (n,)
    try:
        J0 = jacobian(x[:1], None)[0] if shared else jacobian(x, None)
        K = o.solve(J0, o.eye(J0.shape[-1], J0) + 0.0 * J0)  # J(0)⁻¹, (d, d) or (n, d, d)
        if not bool((K == K).all()):
            K = None
    except (RuntimeError, np.linalg.LinAlgError, ValueError):
        K = None  # J(0) singular (e.g. α = 0 and g'(0) = 0): Newton only
    idx = _rows(rn > tol2)
    for _ in range(chord_iter if K is not None else 0):
        if len(idx) == 0:
            break
        xc = x[idx] - (r[idx] @ K.T if shared else (K[idx] @ r[idx][..., None])[..., 0])
        rc = residual(xc, idx)
        rnc = _sq(rc)
        good = rnc <= 0.25 * rn[idx]  # the norm at least halved
        keep = idx[good]
        x[keep], r[keep], rn[keep] = xc[good], rc[good], rnc[good]
        idx = keep[rnc[good] > tol2[keep]]
    idx = _rows(rn > tol2)
    if len(idx) == 0:
        return x
    xs, rs, rns, t2 = x[idx], r[idx], rn[idx], tol2[idx]
    live = rns > t2
    for _ in range(max_iter):
        if not bool(live.any()):
            break
        try:
            dx = _batched_solve(jacobian(xs, idx), -rs)
        except (RuntimeError, np.linalg.LinAlgError) as e:  # torch: RuntimeError subclass; numpy: ValueError
            raise StabilityError(f"{what}: singular Jacobian, Newton cannot continue ({e})") from e
        step = o.where(live, 1.0 + 0.0 * rns, 0.0 * rns)
        for _ in range(30):
            xn = xs + step[:, None] * dx
            rnew = residual(xn, idx)
            rnn = _sq(rnew)
            bad = (rnn > rns) & (rnn > t2)
            if not bool(bad.any()):
                break
            step = o.where(bad, 0.5 * step, step)
        # an example whose residual no longer falls has stalled at rounding level (or failed:
        # judged below); keep its best point
        better = rnn < rns
        xs = o.where(better[:, None], xn, xs)
        rs = o.where(better[:, None], rnew, rs)
        rns = o.where(better, rnn, rns)
        live = live & better & (rns > t2)
    x[idx] = xs
    worst = _to_float((rns / t2) ** 0.5)
    if worst > 1e3:
        raise StabilityError(f"{what}: Newton did not reach a fixed point (residual {worst:.3g} × the tolerance); "
                             "the target may lie outside the range of g (no steady state exists)")
    return x


def steady_state(W, B, delta_l, g="linear", alpha=1e-3, *, architecture="controller", tol=1e-12,
                 max_iter=50, chord_iter=30):
    """The fixed point of Algorithm 1 (eq. 15) for every example, paper sign.

    Linear g: the closed form of eq. 10, ``δ_{l−1} = B(WB − αI)⁻¹ δ_l = (BW − αI)⁻¹ B δ_l`` (NDI's
    operator, applied to ``delta_l`` rows).  Other g: the root of r on the smaller unknown —
    controller: ``r(u) = W g(B u) − α u − δ_l``, ``J = W diag(g'(Bu)) B − αI`` (d_l × d_l), then
    ``δ_{l−1} = B u``; S1–S2: ``r(δ) = B(W g(δ) − δ_l) − α δ``, ``J = B W diag(g'(δ)) − αI`` —
    by up to ``chord_iter`` chord steps with the batch's one J(0), then damped per-example Newton
    for the examples left (see :func:`_newton`; ``chord_iter=0``: Newton only).  ``tol`` bounds
    each example's ‖r‖ (plus 16 ulp of ‖δ_l‖, which matters for float32).
    Returns δ_{l−1}, shape (n, d_{l−1}).  Raises :class:`StabilityError` when no fixed point is
    found (e.g. a target beyond what ``W g(·)`` can reach for a saturating g).
    """
    _check_controller_shapes(W, B, alpha, architecture)
    g = _g(g)
    if g.name == "linear":
        return delta_l @ NDI(alpha=alpha).operator(W, B).T
    o = ops(delta_l)
    if architecture == "controller":
        I = o.eye(W.shape[0], W)

        def F(u, rows):
            return _rows_of(g, rows)(u @ B.T) @ W.T - alpha * u

        def jac(u, rows):
            return (W * _rows_of(g, rows).gate(u @ B.T)[:, None, :]) @ B - alpha * I

        u = _newton(F, jac, delta_l, tol=_row_tol(delta_l, tol), max_iter=max_iter,
                    chord_iter=chord_iter, shared=not isinstance(g, Around), what="DI steady state")
        return u @ B.T
    I = o.eye(W.shape[1], W)

    BW = B @ W
    WtBt = BW.T

    def F2(d, rows):
        return _rows_of(g, rows)(d) @ WtBt - alpha * d

    def jac2(d, rows):
        return BW * _rows_of(g, rows).gate(d)[:, None, :] - alpha * I

    target = delta_l @ B.T
    return _newton(F2, jac2, target, tol=_row_tol(target, tol), max_iter=max_iter,
                   chord_iter=chord_iter, shared=not isinstance(g, Around), what="DI (S1-S2) steady state")


def steady_state_loop(Ws, B, delta_L, gs, alpha=1e-3, *, tol=1e-12, max_iter=50, chord_iter=30):
    """Fixed point of Algorithm 3 (single loop): ``δ_1 = B u``, ``δ_k = W_k g_{k−1}(δ_{k−1})``,
    ``W_L g_{L−1}(δ_{L−1}) = δ_L + α u``.  Chord, then Newton (as :func:`steady_state`) on u with
    ``J = W_L D_{L−1} W_{L−1} ⋯ W_2 D_1 B − αI``.  Returns ``[δ_1, …, δ_{L−1}]``."""
    gs = [_g(g) for g in gs]
    o = ops(delta_L)
    I = o.eye(Ws[-1].shape[0], Ws[-1])

    def chain(u, rows=None):
        xs = [u @ B.T]
        for k in range(1, len(Ws)):
            xs.append(_rows_of(gs[k - 1], rows)(xs[-1]) @ Ws[k - 1].T)
        return xs

    def F(u, rows):
        return _rows_of(gs[-1], rows)(chain(u, rows)[-1]) @ Ws[-1].T - alpha * u

    def jac(u, rows):
        xs = chain(u, rows)
        M = _rows_of(gs[0], rows).gate(xs[0])[:, :, None] * B  # (n, d_1, d_L)
        for k in range(1, len(Ws)):
            M = _rows_of(gs[k], rows).gate(xs[k])[:, :, None] * (Ws[k - 1] @ M)
        return Ws[-1] @ M - alpha * I

    if all(g.name == "linear" for g in gs):  # one linear solve
        P = B
        for W in Ws[:-1]:
            P = W @ P
        A = Ws[-1] @ P - alpha * I
        u = o.solve(A, delta_L.T).T
    else:
        u = _newton(F, jac, delta_L, tol=_row_tol(delta_L, tol), max_iter=max_iter,
                    chord_iter=chord_iter, shared=not any(isinstance(g, Around) for g in gs),
                    what="single-loop DI steady state")
    return chain(u)


# ----------------------------------------------------------------------------------------------
# linear stability (S9) and smoothed-spectral-abscissa optimisation of B
# ----------------------------------------------------------------------------------------------


def _np(a):
    if is_torch(a):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def system_matrix(W, B, alpha, architecture="controller"):
    """The S9 block matrix (numpy, float64): controller ``[[−I, B], [W, −αI]]`` on (δ_{l−1}, u_l);
    S1–S2 ``[[−αI, B], [W, −I]]`` on (δ_{l−1}, δ̃_l)."""
    W, B = _np(W), _np(B)
    d_l, d_p = W.shape
    a_top, a_bot = (1.0, alpha) if architecture == "controller" else (alpha, 1.0)
    return np.block([[-a_top * np.eye(d_p), B], [W, -a_bot * np.eye(d_l)]])


def loop_matrix(Ws, B, alpha):
    """Jacobian at 0 of the linear single loop (Alg. 3) on (δ_1, …, δ_{L−1}, u_L), numpy float64."""
    Ws = [_np(W) for W in Ws]
    B = _np(B)
    dims = [W.shape[1] for W in Ws] + [Ws[-1].shape[0]]
    offs = np.concatenate([[0], np.cumsum(dims)])
    A = np.zeros((offs[-1], offs[-1]))
    for k, d in enumerate(dims):
        A[offs[k]:offs[k + 1], offs[k]:offs[k + 1]] = -np.eye(d) * (alpha if k == len(dims) - 1 else 1.0)
    A[offs[0]:offs[1], offs[-2]:offs[-1]] = B
    for k, W in enumerate(Ws):
        A[offs[k + 1]:offs[k + 2], offs[k]:offs[k + 1]] = W
    return A


def spectral_abscissa(A) -> float:
    """Largest real part of the eigenvalues of A."""
    return float(np.max(np.linalg.eigvals(_np(A)).real))


def stability(W, B, alpha, *, architecture="controller", reduced=True) -> float:
    """Largest real eigenvalue of the S9 block matrix (< 0: the linear DI dynamics converge).

    ``reduced=True`` uses ``(λ + 1)(λ + α) = μ`` for the eigenvalues μ of the smaller of
    ``WB``/``BW`` (the remaining eigenvalues are −1 and −α), costing one (min d)² eigenproblem
    instead of one of size d_l + d_{l−1}; ``reduced=False`` takes the eigenvalues of S9 directly.
    """
    if not reduced:
        return spectral_abscissa(system_matrix(W, B, alpha, architecture))
    W, B = _np(W), _np(B)
    d_l, d_p = W.shape
    mu = np.linalg.eigvals(W @ B if d_l <= d_p else B @ W).astype(complex)
    root = np.sqrt((1.0 - alpha) ** 2 + 4.0 * mu)  # principal branch: Re ≥ 0
    lam = (-(1.0 + alpha) + root) / 2.0
    rest = []
    if d_l != d_p:
        top_extra = (d_l < d_p) == (architecture == "controller")
        rest.append(-1.0 if top_extra else -alpha)
    return float(max([lam.real.max(), *rest]))


def _lyap(A, Q):
    from scipy.linalg import solve_continuous_lyapunov  # local: scipy only when needed

    return solve_continuous_lyapunov(A, Q)


def ssa(A, width=0.01):
    """Smoothed spectral abscissa s̃ of A and its gradient ∂s̃/∂A (Vanbiervliet et al. 2009).

    s̃ is the s > spectral abscissa with ``f(s) = ∫₀^∞ ‖e^{(A−sI)t}‖²_F dt = tr P(s) = n / (2·width)``,
    where ``(A − sI)P + P(A − sI)ᵀ = −I``; Vanbiervliet's ε is ``2·width/n``, chosen so that for a
    normal A with all eigenvalues at a, ``s̃ = a + width``.  Gradient (implicit function
    theorem): ``∂s̃/∂A = QP / tr(QP)`` with ``(A − sI)ᵀQ + Q(A − sI) = −I``.
    """
    A = _np(A)
    n = A.shape[0]
    target = n / (2.0 * width)
    I = np.eye(n)
    a = spectral_abscissa(A)

    def f(s):
        return float(np.trace(_lyap(A - s * I, -I)))

    lo, hi = a, a + max(width, 1e-3)
    while f(hi) > target:
        lo, hi = hi, hi + 2 * (hi - a)
    for _ in range(60):  # bisection on the monotone f (f → ∞ at the abscissa)
        mid = 0.5 * (lo + hi)
        if mid <= a or f(mid) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-4 * width:
            break
    s = hi
    As = A - s * I
    P = _lyap(As, -I)
    Q = _lyap(As.T, -I)
    G = Q @ P
    return s, G / np.trace(G)


def _ssa_descent(B, build, pull, *, target, lr, width, max_iter, min_iter, what):
    """Descend the SSA of ``build(B)`` in B (gradient ``pull(∂s̃/∂A)``) until its abscissa ≤ target."""
    B = B.copy()
    A = build(B)
    lam0 = lam = spectral_abscissa(A)
    s, G = ssa(A, width)
    it = 0
    while it < max_iter and (lam > target or it < min_iter):
        gB = pull(G)
        gB = gB / (np.linalg.norm(gB) + 1e-300) * max(np.linalg.norm(B), 1e-3)
        step = lr
        for _ in range(20):  # backtracking: accept the first step that lowers s̃
            Bn = B - step * gB
            sn, Gn = ssa(build(Bn), width)
            if sn < s:
                break
            step *= 0.5
        B, s, G = Bn, sn, Gn
        lam = spectral_abscissa(build(B))
        it += 1
    info = {"lambda_before": lam0, "lambda_after": lam, "iterations": it, "ssa": s}
    if lam > target:
        raise StabilityError(f"SSA optimisation of {what} did not stabilise DI: largest real eigenvalue {lam0:.4g} -> "
                             f"{lam:.4g} after {it} steps (wanted <= {target:g}); try a larger alpha or Tr-Init")
    return B, info


def stabilize(W, B, alpha, *, architecture="controller", target=-0.01, lr=0.05, width=0.01, max_iter=300,
              min_iter=0, reduced=None):
    """Gradient descent of the SSA of S9 with respect to B only (§7.3) until the largest real
    eigenvalue is ≤ ``target``.  Returns ``(B_new, info)`` (B as numpy float64); raises
    :class:`StabilityError` if ``max_iter`` steps do not get there.  Each step has length
    ``lr·‖B‖`` along the normalised gradient, halved until it lowers s̃ (backtracking).

    ``reduced`` (default: when d_l < d_{l−1}) descends the SSA of S9 restricted to the subspace
    the DI trajectories live in (δ = B c, :func:`subspace_euler_step`): the 2d_l × 2d_l matrix
    :func:`system_matrix` ``(WB, I)`` — ``[[−I, I], [WB, −αI]]`` for the controller — whose
    eigenvalues are S9's except the extra −1 (controller) or −α (expanding), with
    ``∂s̃/∂B = Wᵀ ∂s̃/∂(WB)``.  Each step then costs Lyapunov solves of size 2d_l instead of
    d_l + d_{l−1} (20 vs 1010 for 784-1000-10).  The criterion (largest real eigenvalue ≤
    ``target``) is the same; the smoothed objective differs from the full S9's in its transient
    (non-normal) part, which ``reduced=False`` keeps, as in the paper.
    """
    W, B = _np(W), _np(B)
    d_l, d_p = W.shape
    if reduced is None:
        reduced = d_l < d_p
    if reduced:
        I = np.eye(d_l)
        return _ssa_descent(B, lambda b: system_matrix(W @ b, I, alpha, architecture),
                            lambda G: W.T @ G[d_l:, :d_l], target=target, lr=lr, width=width,
                            max_iter=max_iter, min_iter=min_iter, what="B")
    return _ssa_descent(B, lambda b: system_matrix(W, b, alpha, architecture), lambda G: G[:d_p, d_p:],
                        target=target, lr=lr, width=width, max_iter=max_iter, min_iter=min_iter, what="B")


def stabilize_loop(Ws, B, alpha, *, target=-0.01, lr=0.05, width=0.01, max_iter=300, min_iter=0):
    """:func:`stabilize` for the single loop (Alg. 3): SSA of :func:`loop_matrix` in the loop's B."""
    Ws, B = [_np(W) for W in Ws], _np(B)
    d_1, d_L = B.shape
    return _ssa_descent(B, lambda b: loop_matrix(Ws, b, alpha), lambda G: G[:d_1, -d_L:],
                        target=target, lr=lr, width=width, max_iter=max_iter, min_iter=min_iter, what="loop B")


# ----------------------------------------------------------------------------------------------
# the rule spec
# ----------------------------------------------------------------------------------------------


def loop_feedback(Rs):
    """Single-loop feedback ``B = −(−R_2)(−R_3)⋯(−R_L)`` (d_1, d_L) from the layers' R's."""
    P = -Rs[1]
    for R in Rs[2:]:
        P = P @ (-R)
    return -P


@register_rule
@dataclass(frozen=True)
class DI(Rule, NetworkRule, InitialisedFeedback):
    """Dynamic inversion (Podlaski & Machens 2020): δ_{l−1} is the steady state of eq. 5/14.

    Parameters (all validated):

    * ``alpha`` ≥ 0 — controller leak (eq. 8; the δ leak in S1).
    * ``dt`` ∈ (0, 1] — Euler step in units of the δ time constant (Algorithm 1).
    * ``chain`` — ``sequential`` (Alg. 1), ``repeat-layer`` (Alg. 2), ``single-loop`` (Alg. 3).
    * ``architecture`` — ``controller`` (eq. 5, 8) or ``expanding`` (S1–S2); not with single-loop.
    * ``tol`` > 0, ``max_steps`` ≥ 1 — stop when the per-step relative change ≤ tol.
    * ``method`` — ``euler`` (simulate the dynamics) or ``steady`` (solve the fixed point).
    * ``init`` — ``tr`` (Tr-Init ``B = −W(0)ᵀ``) or ``random`` (R-Init, stabilised by SSA).
    * ``transfer`` — the g of eq. 14; ``None`` = the network's own transfers
      (:meth:`reference_signals`, the torch engine), linear when a single layer is asked without
      one (:meth:`propagate`).  Set, it is used in every layer's inversion.
    * ``max_norm`` — optional per-example cap on ‖δ_{l−1}‖ (§7.5.1 used 10 / 1 for regression).
    * ``stabilize`` — in training, run SSA on B whenever S9's largest eigenvalue turns ≥ 0 (§7.5.1).
    * ``around`` — ``zero``: eq. 14 as printed, ``W g(δ_{l−1})``; ``activity`` (not in the paper):
      ``W[g(a_{l−1} + δ_{l−1}) − g(a_{l−1})]`` at each example's forward pre-activation (see
      :class:`Around`), whose small-δ limit carries the ``g'(a)`` gate that eq. 14 lacks.  Needs the
      forward pass, so it acts in :meth:`reference_signals` (the engine's DI) only.
      ``gated`` (the authors' later published code, not eq. 14): the controller runs with linear g and
      its converged δ_{l−1} is then multiplied by g'(a_{l−1}) of the forward pass — a gated DI whose
      fixed point is gated NDI, ``g'(a_{l−1}) ∘ B(WB − αI)⁻¹δ_l``; sequential chain only.
    * ``cap_chain`` — with ``max_norm``: ``capped`` (default) — each layer's capped δ_{l−1} is what the
      next layer inverts; ``uncapped`` (the authors' code) — the chain inverts the uncapped δ and only
      each layer's teaching signal is capped.  §7.5.1 does not decide between them.

    ``gated = False``: no ``g'(a_{l−1})`` factor (§4.2).  Sign: the package's δ = −(paper's δ).
    """

    alpha: float = 1e-3
    dt: float = 0.1
    chain: str = "sequential"
    architecture: str = "controller"
    tol: float = 1e-6
    max_steps: int = 5000
    method: str = "euler"
    init: str = "tr"
    transfer: str | None = None
    max_norm: float | None = None
    stabilize: bool = True
    around: str = "zero"
    cap_chain: str = "capped"

    name: ClassVar[str] = "di"
    feedback: ClassVar[str] = "fixed"
    gated: ClassVar[bool] = False

    def __post_init__(self):
        s = object.__setattr__
        s(self, "alpha", check_range("alpha", self.alpha, 0.0, None))
        s(self, "dt", check_range("dt", self.dt, 0.0, DT_MAX, lo_open=True))
        check_choice("chain", self.chain, CHAINS)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_choice("method", self.method, METHODS)
        check_choice("init", self.init, INITS)
        check_choice("around", self.around, AROUND)
        check_choice("cap_chain", self.cap_chain, CAP_CHAINS)
        if self.around == "gated" and self.chain != "sequential":
            raise ValueError("around='gated' (linear controller, then the g'(a) gate) is defined for "
                             "chain='sequential' only")
        if self.cap_chain == "uncapped" and self.chain != "sequential":
            raise ValueError("cap_chain='uncapped' is defined for chain='sequential' only")
        s(self, "tol", check_range("tol", self.tol, 0.0, 1.0, lo_open=True))
        ms = check_range("max_steps", self.max_steps, 1, 1e9)
        if ms != int(ms):
            raise ValueError(f"max_steps must be an integer, got {self.max_steps!r}")
        s(self, "max_steps", int(ms))
        if self.transfer is not None:
            get_transfer(self.transfer)
        if self.max_norm is not None:
            s(self, "max_norm", check_range("max_norm", self.max_norm, 0.0, None, lo_open=True))
        if self.chain == "single-loop" and self.architecture != "controller":
            raise ValueError("architecture='expanding' (S1-S2) is defined per layer; "
                             "chain='single-loop' needs architecture='controller'")

    # -- layer-local ------------------------------------------------------------------------------

    def operator(self, W, R):
        """Linear-g steady-state operator (eq. 10), identical to NDI's ``M_l``."""
        return NDI(alpha=self.alpha).operator(W, R)

    def _invert_uncapped(self, W, R, target, g):
        if self.max_norm is None:
            return self.invert(W, R, target, g)
        return dataclasses.replace(self, max_norm=None).invert(W, R, target, g)

    def invert(self, W, R, target, g="linear"):
        """One layer's inversion of ``target`` (n, d_l), **paper sign**, by ``method``."""
        if self.method == "steady":
            try:
                return self._cap(steady_state(W, R, target, g, self.alpha, architecture=self.architecture))
            except StabilityError as e:  # no fixed point: do what Algorithm 1 does, and say so
                warnings.warn(f"{e}; falling back to max_steps={self.max_steps} Euler steps (Algorithm 1)",
                              RuntimeWarning, stacklevel=2)
        sol = simulate(W, R, target, g, self.alpha, self.dt, self.tol, self.max_steps,
                       architecture=self.architecture)
        self._warn(sol)
        return self._cap(sol.delta)

    def propagate(self, W, R, delta, *, delta_out=None):
        """δ_{l−1} = −DI(−δ_l) with ``g = transfer``; sign of the package.

        With ``transfer=None`` a single layer does not know its network's g: it returns the
        linear-g steady state (eq. 10; exact for linear networks, the small-δ limit when
        g'(0) = 1) by one solve, whatever ``method`` says.  The network-level DI, with each
        layer's own g and every chain, is :meth:`reference_signals` — which the torch engine's
        after-backward hook (:mod:`bridge.inversion`) uses to set the weight gradients.  With
        ``around="activity"`` (g around the forward pre-activation, which a single layer does not
        see) it likewise returns the linear-g steady state.
        """
        if self.transfer is None or self.around in ("activity", "gated"):  # these need the forward pass
            return self._cap(delta @ self.operator(W, R).T)
        return -self.invert(W, R, -delta, self.transfer)

    # -- network level ----------------------------------------------------------------------------

    def reference_signals(self, Ws, Rs, fwd, delta_L, transfers):
        """``[δ_1, …, δ_L]`` (package sign) for the whole network with each layer's own g — or,
        when ``transfer`` is set, that g in every layer's inversion (``transfer="linear"``: the
        linear steady state of eq. 10 without NDI's g'(a) gate)."""
        gs = [get_transfer(self.transfer or t) for t in transfers]
        gates = None
        if self.around == "activity":  # each layer's g around its own forward pre-activation
            gs = [Around(g, a) for g, a in zip(gs, fwd.As)]
        elif self.around == "gated":  # linear controller, then the forward pass's g'(a) (authors' code)
            gates = [g.gate(a) for g, a in zip(gs, fwd.As)]
            gs = [get_transfer("linear")] * len(gs)
        L = len(Ws)
        deltas = [None] * L
        deltas[-1] = delta_L
        if L == 1:
            return deltas
        tgt = -delta_L  # paper sign
        if gates is not None or self.cap_chain == "uncapped":
            for l in range(L - 1, 0, -1):
                raw = self._invert_uncapped(Ws[l], Rs[l], tgt, gs[l - 1])
                if gates is not None:
                    raw = raw * gates[l - 1]
                signal = self._cap(raw)
                deltas[l - 1] = -signal
                tgt = raw if self.cap_chain == "uncapped" else signal
            return deltas
        if self.chain == "sequential" or (self.chain == "repeat-layer" and self.method == "steady") or L == 2:
            for l in range(L - 1, 0, -1):
                tgt = self.invert(Ws[l], Rs[l], tgt, gs[l - 1])
                deltas[l - 1] = -tgt
            return deltas
        if self.chain == "repeat-layer":
            sol = simulate_repeat(Ws[1:], Rs[1:], tgt, gs[:-1], self.alpha, self.dt, self.tol, self.max_steps,
                                  architecture=self.architecture)
            self._warn(sol)
            for k, d in enumerate(sol.deltas):
                deltas[k] = -self._cap(d)
            return deltas
        B = loop_feedback(Rs)
        xs = None
        if self.method == "steady":
            try:
                xs = steady_state_loop(Ws[1:], B, tgt, gs[:-1], self.alpha)
            except StabilityError as e:
                warnings.warn(f"{e}; falling back to max_steps={self.max_steps} Euler steps (Algorithm 3)",
                              RuntimeWarning, stacklevel=2)
        if xs is None:
            sol = simulate_loop(Ws[1:], B, tgt, gs[:-1], self.alpha, self.dt, self.tol, self.max_steps)
            self._warn(sol)
            xs = sol.deltas
        for k, d in enumerate(xs):
            deltas[k] = -self._cap(d)
        return deltas

    # -- helpers ----------------------------------------------------------------------------------

    def initial_feedback(self, W, R=None, *, seed=None):
        """Initial B for a layer: Tr-Init ``−Wᵀ``, or R-Init (``R`` given, or U(−0.01, 0.01) from
        ``seed``) made stable by :func:`stabilize` when S9 has an eigenvalue ≥ 0."""
        if self.init == "tr":
            return -W.T
        if R is None:
            R = np.random.default_rng(seed).uniform(-0.01, 0.01, size=(W.shape[1], W.shape[0]))
        if stability(W, R, self.alpha, architecture=self.architecture) < 0:
            return R
        Bn, _ = stabilize(W, R, self.alpha, architecture=self.architecture)
        if is_torch(W):
            return ops(W).t.as_tensor(Bn, dtype=W.dtype, device=W.device)
        return Bn.astype(np.asarray(W).dtype)

    def _cap(self, d):
        if self.max_norm is None:
            return d
        nrm = _sq(d) ** 0.5
        scale = ops(d).where(nrm > self.max_norm, self.max_norm / (nrm + 1e-300), 1.0 + 0.0 * nrm)
        return d * scale[:, None]

    def _warn(self, sol: DISolution):
        if not sol.converged and self.tol > 0:
            warnings.warn(f"DI did not converge in max_steps={self.max_steps} (relative change {sol.rel_change:.3g} "
                          f"> tol={self.tol:g}); raise max_steps, alpha or dt", RuntimeWarning, stacklevel=3)
