"""Dynamic inversion as Brian2 rate populations (Podlaski & Machens 2020, eq. 5, 8, 14, S1–S2,
Algorithms 1–3).

Populations (dimensionless, signed rates; time constant ``tau``; one copy of every population
per example, so a batch runs as block-diagonal copies):

* ``delta`` units δ_{l−1}: leak and feedback input ``fb = B u`` (eq. 5; S1: leak α, ``fb = B e``);
* ``u`` controller units u_l: leak α, input ``W g(δ_{l−1})`` minus the target δ_l (eq. 8, 14);
* S1–S2: ``readout`` units δ̃_l with ``err = δ̃_l − δ_l`` (S2) in place of the controller;
* single loop (Alg. 3): follower populations ``dδ_k/dt = −δ_k + W_k g(δ_{k−1})``.

Discretisation
--------------
Every population integrates its own one-variable ODE with ``method='euler'``:
``x ← x + dt·f(x)``.  The pseudocode (Algorithms 1–3) is *Gauss–Seidel*: each line uses the
values the lines above it have just written (Alg. 1: δ first, then u with the new δ).  Brian2
would update all state variables of one group simultaneously, so each variable lives in its own
group and the groups are **ordered** inside the ``groups`` slot: a summed-variable updater runs
at ``order = target.order − 1`` (Brian2 2.9), so giving the populations orders 2, 5, 8, … makes
each input be summed right before its population steps, from the values already updated this
step (Alg. 2's copy of a live δ_l into the next controller's target runs at ``order − 2`` of
that pair's δ group, before its feedback is summed).  The numpy/torch twin
(:mod:`plasticity.inversion`, :func:`~plasticity.inversion.euler_step`)
is exactly Algorithm 1's order, so the two agree to round-off.  ``StateMonitor`` records in the
``start`` slot, i.e. entry k is the state after k steps.

Parameters (``tau``, ``alpha``) are each group's own ``namespace``; ``dt`` — a Brian2 time, the
paper's step times :data:`TAU` (``dt_paper = 0.1`` is ``0.1*ms``) — is set on every object (no
``defaultclock``).  Code generation defaults to the ``numpy`` target (no compiler); ``target=``
picks it per circuit and it is set only while the circuit builds and runs
(:func:`circuits._brian.codegen_target`).  Every object name starts with ``name`` (default
``'di'``: ``di_delta0``, ``di_u1``, ``di_W1`` …) so circuits with different names share a
``Network``; ``groups``/``synapses``/``monitors`` are keyed by the short names (``delta0``).

Symbols, paper → Brian2
-----------------------
==========  ===============================================================
paper       Brian2
==========  ===============================================================
δ_{l−1}     ``delta`` of group ``delta{l-1}`` (one per example × unit)
u_l         ``u`` of group ``u{l}``
δ̃_l (S2)   ``dtilde`` of group ``readout{l}``
δ_l         ``target`` (constant) of the controller / readout group
W_l, B_l    ``w`` / ``b`` of the Synapses objects ``W{l}`` / ``B{l}``
α, dt       ``alpha`` (namespace), ``dt = dt_paper · tau`` on every object
g           subexpression ``gd`` of the δ groups (:data:`G_EXPR`)
==========  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import brian2 as b2
import numpy as np

from plasticity.transfers import get_transfer

from ._brian import check_dt, check_name, check_target, codegen_target

#: one unit of the paper's dimensionless time
TAU = 1.0 * b2.ms

#: g of eq. 14 as a Brian2 expression of the δ variable
G_EXPR = {
    "linear": "delta",
    "tanh": "tanh(delta)",
    "satlin": "clip(delta, -1, 1)",
    "relu": "0.5*(delta + abs(delta))",
    "logistic": "1/(1 + exp(-delta))",
}

#: eq. 5 — recipient units δ_{l−1}: dδ/dt = −δ + B u (controller architecture)
EQ_DELTA = """
ddelta/dt = (-delta + fb)/tau : 1
fb : 1
gd = {g} : 1
"""

#: S1 — recipient units with leak α and input B e (expanding-layer architecture)
EQ_DELTA_S1 = """
ddelta/dt = (-alpha*delta + fb)/tau : 1
fb : 1
gd = {g} : 1
"""

#: eq. 8 / 14 — controller units: du/dt = −α u + W g(δ_{l−1}) − δ_l (``target`` is a plain
#: parameter so that Alg. 2 can sum a live δ into it)
EQ_CONTROLLER = """
du/dt = (-alpha*u + inp - target)/tau : 1
inp : 1
target : 1
"""

#: S2 — readout units: dδ̃/dt = −δ̃ + W g(δ_{l−1}); err = δ̃ − δ_l feeds S1
EQ_READOUT = """
ddtilde/dt = (-dtilde + inp)/tau : 1
inp : 1
target : 1 (constant)
err = dtilde - target : 1
"""

#: Alg. 3 — follower units: dδ_k/dt = −δ_k + W_k g(δ_{k−1})
EQ_FOLLOWER = """
ddelta/dt = (-delta + fb)/tau : 1
fb : 1
gd = {g} : 1
"""

#: synapses, W: controller input summed from g(δ) of the layer below
SYN_FORWARD = "w : 1 (constant)\ninp_post = w*gd_pre : 1 (summed)"
#: synapses, B: feedback summed from the controller (or from the S2 error)
SYN_FEEDBACK = "b : 1 (constant)\nfb_post = b*{src}_pre : 1 (summed)"
#: one-to-one copy of a live δ as a controller's target (Alg. 2)
SYN_TARGET = "target_post = delta_pre : 1 (summed)"
#: follower input, W_k
SYN_FOLLOW = "w : 1 (constant)\nfb_post = w*gd_pre : 1 (summed)"

METHOD = "euler"


@dataclass
class ControllerCircuit:
    """Handle on a built DI circuit: the Brian2 ``Network`` and its objects (add monitors freely).

    ``groups``/``synapses``/``monitors`` map names to the Brian2 objects; ``layout`` maps each
    group name to ``(n_examples, d)``; ``run(steps)`` advances ``steps`` Euler steps of ``dt``
    (a Brian2 time) under the code-generation ``target`` it was built for.
    """

    network: b2.Network
    groups: dict
    synapses: dict
    monitors: dict
    layout: dict
    dt: object
    namespace: dict = field(default_factory=dict)
    steps_run: int = 0
    target: str = "numpy"
    name: str = "di"

    def run(self, steps: int):
        steps = int(steps)
        if steps < 0:
            raise ValueError(f"steps must be ≥ 0, got {steps}")
        with codegen_target(self.target):
            self.network.run(steps * self.dt, namespace=self.namespace)
        self.steps_run += steps
        return self

    def state(self, name: str) -> np.ndarray:
        """Current value of group ``name`` as (n, d)."""
        g = self.groups[name]
        var = _VAR[name.rstrip("0123456789")]
        return np.asarray(getattr(g, var)[:]).reshape(self.layout[name])

    def trajectory(self, name: str) -> np.ndarray:
        """Recorded values (steps, n, d); entry k is the state after k steps."""
        mon = self.monitors[name]
        var = _VAR[name.rstrip("0123456789")]
        v = np.asarray(getattr(mon, var))  # (N, steps)
        n, d = self.layout[name]
        return v.T.reshape(-1, n, d)


_VAR = {"delta": "delta", "u": "u", "readout": "dtilde"}


def _blocks(n, d_pre, d_post, M):
    """Indices and values of block-diagonal copies of M (d_post, d_pre): one block per example."""
    q, p = np.meshgrid(np.arange(d_post), np.arange(d_pre), indexing="ij")
    e = np.arange(n)[:, None, None]
    i = (e * d_pre + p[None]).ravel()
    j = (e * d_post + q[None]).ravel()
    v = np.broadcast_to(np.asarray(M, dtype=np.float64)[None], (n, d_post, d_pre)).ravel()
    return i, j, v


def _connect(S, n, d_pre, d_post, M, var):
    i, j, v = _blocks(n, d_pre, d_post, M)
    S.connect(i=i, j=j)
    setattr(S, var, v)


def _g_expr(g):
    name = get_transfer(g).name
    if name not in G_EXPR:
        raise ValueError(f"no Brian2 expression for transfer {name!r}; known: {', '.join(G_EXPR)}")
    return G_EXPR[name]


class _Builder:
    """Collects the objects of one circuit; every Brian2 name is ``{prefix}_{key}``."""

    def __init__(self, n, dt, alpha, target, record, prefix):
        self.n, self.dt, self.record, self.target, self.prefix = n, dt, record, target, prefix
        self.groups, self.syn, self.mons, self.layout = {}, {}, {}, {}
        self.namespace = {"tau": TAU, "alpha": float(alpha)}
        self.order = 2

    def group(self, key, eqs, d):
        G = b2.NeuronGroup(self.n * d, eqs, method=METHOD, dt=self.dt, order=self.order, name=f"{self.prefix}_{key}",
                           namespace=self.namespace)
        self.order += 3
        self.groups[key] = G
        self.layout[key] = (self.n, d)
        return G

    def synapses(self, key, src, dst, model, M, var, d_pre, d_post):
        S = b2.Synapses(src, dst, model, dt=self.dt, name=f"{self.prefix}_{key}")
        _connect(S, self.n, d_pre, d_post, M, var)
        self.syn[key] = S
        return S

    def finish(self):
        if self.record:
            for key, G in self.groups.items():
                self.mons[key] = b2.StateMonitor(G, _VAR[key.rstrip("0123456789")], record=True,
                                                 dt=self.dt, name=f"{self.prefix}_mon_{key}")
        net = b2.Network(*self.groups.values(), *self.syn.values(), *self.mons.values(), name=f"{self.prefix}_net")
        return ControllerCircuit(net, self.groups, self.syn, self.mons, self.layout, self.dt, self.namespace,
                                 target=self.target, name=self.prefix)


def _prepare(delta_target):
    t = np.asarray(delta_target, dtype=np.float64)
    if t.ndim not in (1, 2):
        raise ValueError(f"delta_target must be (d_l,) or (n, d_l), got shape {t.shape}")
    return t[None] if t.ndim == 1 else t


def _check_common(dt, target, name, architecture="controller"):
    """Validate the keywords shared by every builder, before any Brian2 object exists."""
    check_dt(dt)
    check_target(target)
    check_name(name)
    if architecture not in ("controller", "expanding"):
        raise ValueError(f"architecture must be one of controller, expanding, got {architecture!r}")


def build_controller(W, B, delta_target, g="linear", alpha=1e-3, dt=0.1 * b2.ms, *, architecture="controller",
                     record=True, target="numpy", name="di") -> ControllerCircuit:
    """One layer's DI circuit (Algorithm 1, or S1–S2 with ``architecture='expanding'``).

    ``W`` (d_l, d_{l−1}), ``B`` (d_{l−1}, d_l), ``delta_target`` δ_l (n, d_l) in the paper's sign;
    ``dt`` a Brian2 time (the paper's step × :data:`TAU`), ``target`` the code-generation target,
    ``name`` the prefix of every object name.  Groups: ``delta{l-1}`` and ``u{l}`` (or
    ``readout{l}``), keyed with l = 1 here.
    """
    _check_common(dt, target, name, architecture)
    W, B, t = np.asarray(W, float), np.asarray(B, float), _prepare(delta_target)
    d_l, d_p = W.shape
    gexpr = _g_expr(g)
    with codegen_target(target):
        return _build_controller(W, B, t, gexpr, alpha, dt, architecture, record, target, name, d_l, d_p)


def _build_controller(W, B, t, gexpr, alpha, dt, architecture, record, target, name, d_l, d_p):
    bld = _Builder(t.shape[0], dt, alpha, target, record, name)
    if architecture == "controller":
        D = bld.group("delta0", EQ_DELTA.format(g=gexpr), d_p)
        U = bld.group("u1", EQ_CONTROLLER, d_l)
        U.target = t.ravel()
        bld.synapses("B1", U, D, SYN_FEEDBACK.format(src="u"), B, "b", d_l, d_p)
    elif architecture == "expanding":
        D = bld.group("delta0", EQ_DELTA_S1.format(g=gexpr), d_p)
        U = bld.group("readout1", EQ_READOUT, d_l)
        U.target = t.ravel()
        bld.synapses("B1", U, D, SYN_FEEDBACK.format(src="err"), B, "b", d_l, d_p)
    bld.synapses("W1", D, U, SYN_FORWARD, W, "w", d_p, d_l)
    return bld.finish()


def build_single_loop(Ws, B, delta_target, gs, alpha=1e-3, dt=0.1 * b2.ms, *, record=True, target="numpy",
                      name="di") -> ControllerCircuit:
    """Algorithm 3 for any depth: ``Ws = [W_2, …, W_L]``, loop feedback ``B`` (d_1, d_L),
    ``gs = [g_1, …, g_{L−1}]``.  Groups ``delta1 … delta{L-1}`` and ``u{L}``, ordered as the
    pseudocode: δ_1, δ_2, …, u_L.  ``dt``, ``target``, ``name``: as :func:`build_controller`."""
    _check_common(dt, target, name)
    Ws, B, t = [np.asarray(W, float) for W in Ws], np.asarray(B, float), _prepare(delta_target)
    gexprs = [_g_expr(g) for g in gs]
    with codegen_target(target):
        return _build_single_loop(Ws, B, t, gexprs, alpha, dt, record, target, name)


def _build_single_loop(Ws, B, t, gexprs, alpha, dt, record, target, name):
    bld = _Builder(t.shape[0], dt, alpha, target, record, name)
    L = len(Ws) + 1
    deltas = []
    for k in range(1, L):
        eq = (EQ_DELTA if k == 1 else EQ_FOLLOWER).format(g=gexprs[k - 1])
        deltas.append(bld.group(f"delta{k}", eq, Ws[k - 1].shape[1]))
    U = bld.group(f"u{L}", EQ_CONTROLLER, Ws[-1].shape[0])
    U.target = t.ravel()
    bld.synapses("Bloop", U, deltas[0], SYN_FEEDBACK.format(src="u"), B, "b", B.shape[1], B.shape[0])
    for k in range(2, L):
        W = Ws[k - 2]
        bld.synapses(f"W{k}", deltas[k - 2], deltas[k - 1], SYN_FOLLOW, W, "w", W.shape[1], W.shape[0])
    bld.synapses(f"W{L}", deltas[-1], U, SYN_FORWARD, Ws[-1], "w", Ws[-1].shape[1], Ws[-1].shape[0])
    return bld.finish()


def build_repeat(Ws, Bs, delta_target, gs, alpha=1e-3, dt=0.1 * b2.ms, *, architecture="controller", record=True,
                 target="numpy", name="di") -> ControllerCircuit:
    """Algorithm 2 for any depth: one (δ_{l−1}, u_l) pair per layer l = L … 2, from the top,
    each controller chasing the live δ_l of the pair above (a one-to-one copy, summed right
    before it steps).  ``Ws = [W_2, …, W_L]``, ``Bs = [B_2, …, B_L]``, ``gs = [g_1, …, g_{L−1}]``;
    groups ``delta{l-1}`` and ``u{l}`` (``readout{l}`` for S1–S2).  ``dt``, ``target``, ``name``: as
    :func:`build_controller`."""
    _check_common(dt, target, name, architecture)
    Ws, Bs, t = [np.asarray(W, float) for W in Ws], [np.asarray(B, float) for B in Bs], _prepare(delta_target)
    gexprs = [_g_expr(g) for g in gs]
    with codegen_target(target):
        return _build_repeat(Ws, Bs, t, gexprs, alpha, dt, architecture, record, target, name)


def _build_repeat(Ws, Bs, t, gexprs, alpha, dt, architecture, record, target, name):
    bld = _Builder(t.shape[0], dt, alpha, target, record, name)
    L = len(Ws) + 1
    above = None  # the δ group of the pair above (None: the fixed δ_L)
    for l in range(L, 1, -1):
        W, B, gexpr = Ws[l - 2], Bs[l - 2], gexprs[l - 2]
        d_l, d_p = W.shape
        eqd = EQ_DELTA if architecture == "controller" else EQ_DELTA_S1
        D = bld.group(f"delta{l - 1}", eqd.format(g=gexpr), d_p)
        if architecture == "controller":
            U = bld.group(f"u{l}", EQ_CONTROLLER, d_l)
            src = "u"
        else:
            eq = EQ_READOUT if above is None else EQ_READOUT.replace("target : 1 (constant)", "target : 1")
            U = bld.group(f"readout{l}", eq, d_l)
            src = "err"
        if above is None:
            U.target = t.ravel()
        else:
            S = b2.Synapses(above, U, SYN_TARGET, dt=bld.dt, name=f"{name}_T{l}")
            S.connect(j="i")
            # the copy must land before this pair's δ sums its feedback (S1 reads err = δ̃ − target)
            S.summed_updaters["target_post"].order = D.order - 2
            bld.syn[f"T{l}"] = S
        bld.synapses(f"B{l}", U, D, SYN_FEEDBACK.format(src=src), B, "b", d_l, d_p)
        bld.synapses(f"W{l}", D, U, SYN_FORWARD, W, "w", d_p, d_l)
        above = D
    return bld.finish()
