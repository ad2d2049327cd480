"""Amit (2021) as Brian2 rate circuits: output error, feedback shut-down, mirrored Hebbian
synapses, and a layered network that learns online with the schedule of Remark 1 / Fig. 15.

Rates are dimensionless and signed (the paper allows negative rates and weights).  Every
discrete update is a ``run_regularly`` operation with an explicit ``when``/``order`` slot; the
matrix twins live in :mod:`plasticity.amit` and follow exactly the same maps and order.

Symbol table (paper → Brian2 variable)
--------------------------------------
==========================  ====================  ===========================================
paper                       Brian2                where
==========================  ====================  ===========================================
x_{0,j}                     ``y`` of layer 0      input group (eq. 1)
h_{l,i} = Σ_j W_{l,ij}x_j    ``a`` (summed)        every layer l ≥ 1 (eq. 1)
x_{l,i} = σ(h_{l,i})        ``y``                 hidden layers, feed-forward phase (Remark 2)
δ_{l,i}                     ``y``                 the same unit after the feedback replaced x
                                                  (Remark 1: "δ replaces the feedforward activity")
Σ_k R_{l+1,ik} δ_{l+1,k}     ``fb`` (summed)       hidden layers (§3.1, eq. 2 with R)
u_{l,i}, v_{l,i}            ``u``, ``v``          control units of the shut-down (App. 1)
s_c, δ_c, t_c               ``s``, ``delta``,     output error microcircuit (App. 1, Fig. 14);
                            ``tc``                ``t`` is Brian2's time, hence ``tc``
H_c                         ``H`` (subexpression) input of δ_c
W_{l,ji}, R_{l,ij}          ``w``, ``r``          one ``Synapses`` per layer pair, pre i → post j
M, S, μ, ε (App. 1)         ``M, S, mu,           namespace constants
                            eps_delta``
K (App. 1)                  ``K``                 namespace constant
η, ε (URFB, §3.1)           ``eta, epsilon``      namespace constants
==========================  ====================  ===========================================

See :mod:`plasticity.amit` for the reading rule of the output circuit (and its proof), the
boundary analysis of the shut-down circuit, and the update-order decision.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from plasticity._validate import check_choice, check_range, check_sizes
from plasticity.amit import (
    FEEDBACK_ORDERS,
    OutputErrorParams,
    OutputErrorTrace,
    check_feedback_bound,
    default_transfers,
    random_init,
    supervisory,
)
from plasticity.losses import Hinge
from plasticity.network import forward
from plasticity.rules import URFB

from ._brian import (
    check_dt,
    check_name,
    check_target,
    codegen_target,
    get_feedback,
    get_weights,
    set_feedback,
    set_weights,
)

# =============================================================================================
# Equation and code strings (paper equation numbers in the comments)
# =============================================================================================

#: Transfer of the output unit δ_c (App. 1, Fig. 13 left); ``{H}`` is its input.  Boundaries:
#: 1+ε on (2M+S, ∞), 1 on (M, 2M+S], 0 on [−M, M], −μ on [−2M−S, −M), −μ−ε below.
SIGMA_DELTA = (
    "((1 + eps_delta)*int({H} > 2*M + S) + int({H} > M)*int({H} <= 2*M + S)"
    " - mu*int({H} >= -2*M - S)*int({H} < -M) - (mu + eps_delta)*int({H} < -2*M - S))"
)
#: Transfer of the control unit t_c (App. 1, Fig. 13 right): 1 if x > 1, 0 on [−μ, 1], −1 if x < −μ.
SIGMA_T = "(int({x} > 1) - int({x} < -mu))"
#: Reading rule: δ_c counts only while its control unit is silent (see plasticity.amit).
READ_RULE = "delta*int(abs(tc) < 0.5)"

#: Output error microcircuit, one row per (example, class) (App. 1, Fig. 14).
OUTPUT_ERROR_EQS = """
h : 1 (constant)              # h_c = <W_c, x>, feed-forward input of class c, |h| < M (App. 1)
s : 1 (constant)              # supervisory unit s_c: +1 presented class, -1 otherwise
delta : 1                     # output unit delta_c = sigma_delta(H_c)
tc : 1                        # control unit t_c = sigma_t(delta_c), initialised at 0
read : 1                      # learning signal read from delta_c (reading rule; `e` is a Brian2 constant)
H = h + 2*M*s - 2*M*tc : 1    # H_c = h_c + 2M s_c - 2M t_c (App. 1)
"""
#: Half-step of δ (the schedule ``delta_phase(t)`` is 1 on δ half-steps, 0 on t half-steps).
OUTPUT_DELTA_HALFSTEP = "on = delta_phase(t)\ndelta = on*" + SIGMA_DELTA.format(H="H") + " + (1 - on)*delta"
#: Half-step of t, followed by the read of δ against the t it just produced.
OUTPUT_T_HALFSTEP = (
    "off = 1 - delta_phase(t)\n"
    "tc = off*" + SIGMA_T.format(x="delta") + " + (1 - off)*tc\n"
    "read = off*" + READ_RULE + " + (1 - off)*read"
)

#: Feedback shut-down unit (eq. 3, App. 1): feed-forward input, control units, gated feedback.
SHUTDOWN_EQS = """
a : 1 (constant)              # h_{l,i}: feed-forward input (eq. 1)
x : 1                         # x_{l,i} = sigma(h_{l,i}), saturated linear (Remark 2)
u : 1                         # control unit u = 1[x >= 1] (App. 1)
v : 1                         # control unit v = -1[x <= -1] (App. 1)
fb : 1 (constant)             # top-down feedback delta_{l,i} before the gate
delta : 1                     # gated feedback: sigma_K(fb - 2K u + 2K v) (eq. 3)
kviol : 1                     # 1 if fb lies outside [-K, K), where the gate may fail
z = fb - 2*K*u + 2*K*v : 1    # input of the gated unit (App. 1)
"""
SATLIN = "{y} = clip({a}, -1, 1)"  # x = sigma(h) = max(-1, min(1, h)) (Remark 2)
#: Control units from the *feed-forward* activity (App. 1, Fig. 15 "second").
CONTROL = "u = int({x} >= 1)\nv = -int({x} <= -1)"
#: The gate σ_K(z) = z if z ≥ −K else 0 (App. 1); exact for −K ≤ fb < K, counted otherwise.
GATE = "{out} = z*int(z >= -K)\nkviol += int(fb - 2*K >= -K) + int(fb < -K)"

#: Input layer (eq. 1: x_0 is presented).
LAYER_INPUT_EQS = """
y : 1                         # x_{0,j}: the presented input
"""
#: Hidden layer l: feed-forward input, rate (x, then δ), control units, feedback input.
LAYER_HIDDEN_EQS = """
a : 1                         # h_{l,i} = sum_j W_{l,ij} x_{l-1,j} (eq. 1), summed from below
y : 1                         # rate: x_{l,i} = sigma(h_{l,i}), then replaced by delta_{l,i} (Remark 1)
u : 1                         # control unit u_{l,i} = 1[x_{l,i} >= 1] (App. 1)
v : 1                         # control unit v_{l,i} = -1[x_{l,i} <= -1] (App. 1)
fb : 1                        # sum_k R_{l+1,ik} delta_{l+1,k} (section 3.1), summed from above
kviol : 1                     # number of feedback inputs outside [-K, K) since the last check
fb_peak : 1                   # max |fb| since the last check
z = fb - 2*K*u + 2*K*v : 1    # input of the gated feedback (App. 1)
"""
#: Output layer L: linear output unit with its error microcircuit (App. 1, Fig. 14).
LAYER_OUTPUT_EQS = """
a : 1                         # h_{L,c} = sum_j W_{L,cj} x_{L-1,j} (eq. 1), summed from below
y : 1                         # rate: x_{L,c} = h_{L,c} (linear output), then replaced by delta_{L,c} (eq. 6)
s : 1                         # supervisory unit s_c: +1 presented class, -1 otherwise
delta : 1                     # output unit delta_c = sigma_delta(H_c)
tc : 1                        # control unit t_c = sigma_t(delta_c)
h_peak : 1                    # max |h_L| since the last check (bound M)
H = a + 2*M*s - 2*M*tc : 1    # H_c = h_c + 2M s_c - 2M t_c (App. 1)
"""
INPUT_PRESENT = "y = x_in(t - t0, i)"
SUPERVISE = "s = s_in(t - t0, i)\ntc = 0"  # t_c is initialised at 0 for every example (App. 1)
LINEAR = "y = a"  # x_L = h_L (section 3.1: no non-linearity on the output layer)
H_CHECK = "h_peak = clip(abs(a), h_peak, inf)"
OUTPUT_DELTA = "delta = " + SIGMA_DELTA.format(H="H")
OUTPUT_T = "tc = " + SIGMA_T.format(x="delta")
OUTPUT_READ = "y = " + READ_RULE  # δ_L replaces x_L (Remark 1)
HIDDEN_GATE = GATE.format(out="y") + "\nfb_peak = clip(abs(fb), fb_peak, inf)"  # δ_l replaces x_l

#: Mirrored synapses between layer l−1 (pre, index i) and layer l (post, index j): one object
#: carries the feed-forward weight W_{l,ji} and the feedback weight R_{l,ij} (§3.1).
MIRRORED_SYNAPSES = """
w : 1                         # feed-forward W_{l,ji}: x_{l-1,i} -> h_{l,j} (eq. 1)
r : 1                         # feedback R_{l,ij}: delta_{l,j} -> layer l-1 unit i (section 3.1)
cw : 1 (constant)             # connectivity mask of W (1 present, 0 absent; Amit section 4)
cr : 1 (constant)             # connectivity mask of R, drawn separately
a_post = w*y_pre : 1 (summed) # h_l = W_l x_{l-1} (eq. 1)
"""
#: Feedback sum onto the presynaptic layer: R_l δ_l (eq. 2 with R in place of Wᵀ).
MIRRORED_FEEDBACK = """
fb_pre = r*y_post : 1 (summed)
"""
#: The Hebbian product of post (δ_{l,j}) and pre (x_{l−1,i}) activity drives both weights:
#: ΔW_l = η δ_l x_{l−1}ᵀ (eq. 2) and ΔR_l = ε η x_{l−1} δ_lᵀ (URFB; ε = 0 is FRFB), masked.
MIRRORED_HEBB = "dw = eta*y_post*y_pre\nw += dw*cw\nr += epsilon*dw*cr"


def _b2():
    import brian2

    return brian2


def _default_dt():
    return 1.0 * _b2().ms


# =============================================================================================
# a. Output error circuit (Appendix 1, Fig. 13–14)
# =============================================================================================


@dataclass
class OutputErrorCircuit:
    """Handle on the Brian2 output error circuit: ``network``, ``group``, ``monitor`` and the
    ``namespace`` its ``run`` uses.  One group row per (example, class): ``k = n·C + c``."""

    network: object
    group: object
    monitor: object
    namespace: dict
    n: int
    C: int
    n_cycles: int
    half_cycle: object
    target: str = "numpy"

    def run(self) -> OutputErrorTrace:
        """Run 2·n_cycles half-steps and return the traces (half-step, n, C)."""
        with codegen_target(self.target):
            self.network.run(2 * self.n_cycles * self.half_cycle, namespace=self.namespace)
        m = self.monitor
        shape = (-1, self.n, self.C)
        delta = np.asarray(m.delta[:]).T.reshape(shape)[-2 * self.n_cycles:]
        tc = np.asarray(m.tc[:]).T.reshape(shape)[-2 * self.n_cycles:]
        read = np.asarray(m.read[:]).T.reshape(shape)[-2 * self.n_cycles:]
        return OutputErrorTrace(delta, tc, read, read[-1].copy())


def build_output_error_circuit(h, labels, params: OutputErrorParams | None = None, *, n_cycles: int = 4,
                               half_cycle=None, target: str = "numpy", name: str = "amit_out") -> OutputErrorCircuit:
    """Build the output error circuit of Appendix 1 for inputs ``h`` (n, C) and class ``labels``.

    The network's dt is one half-cycle (``half_cycle``, a Brian2 time, default 1 ms).  A phase
    schedule (``TimedArray`` ``delta_phase``, named ``{name}_delta_phase``: 1, 0,
    1, 0, …) makes half-step 2k update δ_c from (h, s, t) and half-step 2k+1 update t_c from δ_c
    and then the read ``read_c = δ_c·1[t_c = 0]`` — the paper's cycle δ → t → δ … with t₀ = 0.
    Both updates are ``run_regularly`` operations in the ``groups`` slot, δ (order 0) before
    t (order 1); the monitor records after them (``when='end'``).
    """
    b2 = _b2()
    check_target(target)
    check_name(name)
    dt = _default_dt() if half_cycle is None else check_dt(half_cycle, "half_cycle")
    p = OutputErrorParams() if params is None else params
    h = p.check_h(h)
    if h.ndim != 2:
        raise ValueError(f"h must be (n, C), got shape {h.shape}")
    n, C = h.shape
    s = supervisory(labels, C)
    if s.shape[0] != n:
        raise ValueError(f"need one label per row of h: {s.shape[0]} labels for {n} rows")
    n_cycles = int(n_cycles)
    if n_cycles < 1:
        raise ValueError(f"n_cycles must be ≥ 1, got {n_cycles}")
    phase = b2.TimedArray(np.tile([1.0, 0.0], n_cycles), dt=dt, name=f"{name}_delta_phase")
    ns = dict(p.namespace(), delta_phase=phase)
    G = b2.NeuronGroup(n * C, OUTPUT_ERROR_EQS, method="euler", dt=dt, name=f"{name}_units", namespace=ns)
    G.h = h.ravel()
    G.s = s.ravel()
    G.tc = 0.0
    G.run_regularly(OUTPUT_DELTA_HALFSTEP, when="groups", order=0, name=f"{name}_delta_step")
    G.run_regularly(OUTPUT_T_HALFSTEP, when="groups", order=1, name=f"{name}_t_step")
    mon = b2.StateMonitor(G, ["delta", "tc", "read"], record=True, when="end", dt=dt, name=f"{name}_mon")
    net = b2.Network(G, mon, name=f"{name}_net")
    return OutputErrorCircuit(net, G, mon, ns, n, C, n_cycles, dt, target)


def output_error_signal(h, labels, params: OutputErrorParams | None = None, *, n_cycles: int = 4,
                        target: str = "numpy", half_cycle=None, name: str = "amit_out"):
    """Run the output error circuit and read its learning signal.

    Returns ``(signal, trace)``: ``signal`` (n, C) is the read ``e = δ·1[t = 0]`` of the last
    cycle, equal to eq. 6 with threshold S (``Hinge(mu).teaching(h, labels)`` for S = 1) — in
    every cycle, see :func:`plasticity.amit.read_output_signal`; ``trace`` holds δ, t and e per
    half-step (:class:`plasticity.amit.OutputErrorTrace`).
    """
    circ = build_output_error_circuit(h, labels, params, n_cycles=n_cycles, half_cycle=half_cycle, target=target,
                                      name=name)
    trace = circ.run()
    return trace.signal, trace


def output_regimes(trace: OutputErrorTrace) -> np.ndarray:
    """Classify each unit's trace (n, C): ``'constant'`` (δ fixed at 1 or −μ, t ≡ 0: learning)
    or ``'oscillating'`` (δ alternates between an overshoot and 0, t between ±1 and 0: no
    learning); ``'other'`` should never occur."""
    d = trace.delta[0::2]  # δ after each δ half-step
    t = trace.tc[1::2]     # t after each t half-step
    const = np.all(d == d[:1], axis=0) & np.all(t == 0, axis=0) & (d[0] != 0)
    if d.shape[0] >= 2:
        osc = (np.all(d[0::2] == d[:1], axis=0) & np.all(d[1::2] == 0, axis=0) & (d[0] != 0)
               & np.all(t[0::2] == np.sign(d[:1]), axis=0) & np.all(t[1::2] == 0, axis=0))
    else:
        osc = np.zeros_like(const)
    return np.where(const, "constant", np.where(osc, "oscillating", "other"))


# =============================================================================================
# b. Feedback shut-down circuit (eq. 3, Appendix 1)
# =============================================================================================


@dataclass
class ShutdownResult:
    """Output of :func:`feedback_shutdown`: gated feedback δ̃, control units, bound flags."""

    gated: np.ndarray
    u: np.ndarray
    v: np.ndarray
    violations: np.ndarray
    network: object = None
    group: object = None


def feedback_shutdown(delta, a, K: float, *, target: str = "numpy", on_violation: str = "raise",
                      name: str = "amit_shutdown") -> ShutdownResult:
    """Gate the top-down feedback ``delta`` by the feed-forward input ``a`` (eq. 3, App. 1).

    One network step with three ordered slots (Fig. 15): ``x = σ(a)`` (order 0); the control
    units ``u = 1[x ≥ 1]``, ``v = −1[x ≤ −1]`` (order 1); ``δ̃ = σ_K(δ − 2Ku + 2Kv)`` (order 2).
    Equals ``get_transfer('satlin').gate(a) * delta`` whenever −K ≤ δ < K.  The circuit itself
    counts the inputs outside that range (``kviol``); with ``on_violation='raise'`` (default)
    any such entry raises ``ValueError``, with ``'report'`` the flags come back in
    ``result.violations``.
    """
    b2 = _b2()
    check_choice("on_violation", on_violation, ("raise", "report"))
    K = check_range("K", K, 0.0, None, lo_open=True)
    check_target(target)
    check_name(name)
    delta = np.asarray(delta, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    if delta.shape != a.shape:
        raise ValueError(f"delta and a must have the same shape, got {delta.shape} and {a.shape}")
    dt = _default_dt()
    G = b2.NeuronGroup(max(delta.size, 1), SHUTDOWN_EQS, method="euler", dt=dt, name=f"{name}_units")
    if delta.size:
        G.fb = delta.ravel()
        G.a = a.ravel()
    G.run_regularly(SATLIN.format(y="x", a="a"), when="groups", order=0, name=f"{name}_ff")
    G.run_regularly(CONTROL.format(x="x"), when="groups", order=1, name=f"{name}_control")
    G.run_regularly(GATE.format(out="delta"), when="groups", order=2, name=f"{name}_gate")
    net = b2.Network(G, name=f"{name}_net")
    with codegen_target(target):
        net.run(dt, namespace={"K": K})
    shape = delta.shape
    viol = (np.asarray(G.kviol[:])[: delta.size] > 0).reshape(shape)
    if on_violation == "raise" and np.any(viol):
        check_feedback_bound(delta, K)  # raises with the details
    return ShutdownResult(np.asarray(G.delta[:])[: delta.size].reshape(shape),
                          np.asarray(G.u[:])[: delta.size].reshape(shape),
                          np.asarray(G.v[:])[: delta.size].reshape(shape), viol, net, G)


# =============================================================================================
# c. Mirrored Hebbian synapses (§3.1)
# =============================================================================================


def build_mirrored_synapses(pre, post, W, R, *, wmask=None, rmask=None, feedback: bool = True,
                            name: str = "amit_syn", hebb_order: int = 0, when: str = "groups"):
    """One ``Synapses`` object carrying W_l (``w``) and R_l (``r``) between ``pre`` and ``post``.

    ``pre`` needs a rate ``y`` (and ``fb`` if ``feedback``), ``post`` needs ``y`` and ``a``.
    Connects all-to-all; the masks (default all ones) are synaptic constants ``cw``, ``cr`` and
    the initial weights are multiplied by them, so absent connections are 0 and stay 0.  The
    Hebbian update ``MIRRORED_HEBB`` is attached as ``run_regularly`` at (``when``,
    ``hebb_order``) and reads ``eta`` and ``epsilon`` from the run namespace.  Returns the
    ``Synapses`` (the update is ``S.contained_objects``, added with it to a network).
    """
    b2 = _b2()
    check_name(name)
    W = np.asarray(W, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    if W.shape != (post.N, pre.N):
        raise ValueError(f"W must have shape (N_post, N_pre) = {(post.N, pre.N)}, got {W.shape}")
    if R.shape != (pre.N, post.N):
        raise ValueError(f"R must have shape (N_pre, N_post) = {(pre.N, post.N)}, got {R.shape}")
    wmask = np.ones_like(W) if wmask is None else np.asarray(wmask, dtype=np.float64)
    rmask = np.ones_like(R) if rmask is None else np.asarray(rmask, dtype=np.float64)
    for nm, m, ref in (("wmask", wmask, W), ("rmask", rmask, R)):
        if m.shape != ref.shape or not np.all((m == 0) | (m == 1)):
            raise ValueError(f"{nm} must be a 0/1 array of shape {ref.shape}")
    eqs = MIRRORED_SYNAPSES + (MIRRORED_FEEDBACK if feedback else "")
    S = b2.Synapses(pre, post, eqs, method="euler", dt=pre.clock.dt, name=name)
    S.connect(True)
    set_weights(S, wmask, "cw")
    set_feedback(S, rmask, "cr")
    set_weights(S, W * wmask, "w")
    set_feedback(S, R * rmask, "r")
    S.run_regularly(MIRRORED_HEBB, when=when, order=hebb_order, name=f"{name}_hebb")
    return S


def mirrored_update(W, R, x_pre, delta_post, *, eta: float, epsilon: float = 1.0, wmask=None, rmask=None,
                    target: str = "numpy", name: str = "amit_mirror"):
    """One plasticity step of the mirrored synapses on given activities; returns ``(W, R)``.

    The presynaptic rates are ``x_pre`` (d_pre,), the postsynaptic ``delta_post`` (d_post,);
    twin: :func:`plasticity.amit.mirrored_update`.
    """
    b2 = _b2()
    check_target(target)
    check_name(name)
    URFB(epsilon)  # validates ε ∈ [0, 1]
    eta = check_range("eta", eta, 0.0, None)
    x_pre = np.asarray(x_pre, dtype=np.float64).ravel()
    delta_post = np.asarray(delta_post, dtype=np.float64).ravel()
    dt = _default_dt()
    pre = b2.NeuronGroup(x_pre.size, "y : 1\nfb : 1", method="euler", dt=dt, name=f"{name}_pre")
    post = b2.NeuronGroup(delta_post.size, "y : 1\na : 1", method="euler", dt=dt, name=f"{name}_post")
    pre.y = x_pre
    post.y = delta_post
    with codegen_target(target):  # connect() generates code
        S = build_mirrored_synapses(pre, post, W, R, wmask=wmask, rmask=rmask, name=f"{name}_syn")
        net = b2.Network(pre, post, S, name=f"{name}_net")
        net.run(dt, namespace={"eta": eta, "epsilon": float(epsilon)})
    return get_weights(S, "w"), get_feedback(S, "r")


# =============================================================================================
# d. Layered learning circuit (Remark 1, Fig. 2 and 15)
# =============================================================================================


@dataclass
class TrainRecord:
    """What :meth:`LayeredCircuit.train` saw: per example, the output h_L before its update and
    the top teaching signal δ_L the output circuit read (both (n, C))."""

    outputs: np.ndarray
    deltas: np.ndarray

    def hinge_loss(self, labels, mu: float = 1.0) -> np.ndarray:
        """Per-example hinge loss (eq. 4) of the online outputs."""
        return Hinge(mu).value(self.outputs, np.asarray(labels))


@dataclass
class _Slot:
    order: int
    what: str
    runner: object = field(repr=False, default=None)


class LayeredCircuit:
    """A layered network that learns online with mirrored Hebbian synapses (Amit §3, App. 1).

    Saturated-linear hidden units, a linear output layer feeding the output error circuit
    (hinge signal, eq. 6), gated feedback below it (shut-down circuit, eq. 3), and mirrored
    synapses W_l / R_l between layers (URFB, ε = 1; FRFB, ε = 0).  No biases.

    One network step presents one example; inside the step every phase is an explicit
    ``run_regularly`` slot (``when='groups'``, increasing ``order``), listed in
    :attr:`schedule`.  With ``feedback_order='after_update'`` (the paper's Fig. 15)::

        present x_0 and s; t_c = 0
        for l = 1..L:  h_l = W_l x_{l−1} (summed), x_l = σ(h_l)          (eq. 1, feed-forward)
        check |h_L| < M; n_cycles × (δ_c ← σ_δ(H_c), t_c ← σ_t(δ_c)); x_L ← δ_L = δ_c·1[t_c = 0]
        for l = L..1:  W_l, R_l += Hebbian(δ_l on layer l, x_{l−1} still on layer l−1)
                       u, v ← controls from x_{l−1}                       (Fig. 15 "second")
                       fb_{l−1} = R_l δ_l (summed, *updated* R_l)          (Fig. 15 "third")
                       x_{l−1} ← δ_{l−1} = σ_K(fb − 2Ku + 2Kv)             (eq. 3)

    ``feedback_order='before_update'`` moves the feedback sum before the Hebbian slot (the old
    R_l), which is exactly ``plasticity.network.sgd_step`` with batch size 1.  The matrix twin
    of both is :func:`plasticity.amit.train_online`.

    Parameters
    ----------
    sizes : (d_0, …, d_L)
    W0s, R0s : initial W_l (d_l, d_{l−1}) and R_l (d_{l−1}, d_l); drawn from ``seed`` when
        ``None`` (:func:`plasticity.amit.random_init`).  Multiplied by the masks.
    eta, epsilon, mu : learning rate, URFB feedback fraction ε ∈ [0, 1], hinge weight μ ∈ (0, 1].
    wmasks, rmasks : 0/1 connectivity masks per layer, or ``sparsity`` (e.g. 0.5) to draw them
        from ``seed`` with :func:`plasticity.random_mask`.
    K, M : bounds of the shut-down (−K ≤ R δ < K) and output circuits (|h_L| < M); both are
        checked after every chunk of examples and raise ``ValueError`` when violated.
    eps_delta : overshoot ε of the output transfer σ_δ; ``n_cycles`` δ/t cycles per example.
    target : ``'numpy'`` or ``'cython'`` (see :mod:`circuits._brian`); ``chunk`` examples per
        ``Network.run`` (the capacity of the input ``TimedArray``s).
    dt : one network step per example, a Brian2 time (default 1 ms); ``name`` prefixes every
        object name (and the input ``TimedArray``s).
    """

    def __init__(self, sizes, W0s=None, R0s=None, eta: float = 0.01, epsilon: float = 1.0, mu: float = 1.0, *,
                 wmasks=None, rmasks=None, sparsity: float | None = None, seed=None, K: float = 1024.0,
                 M: float = 1024.0, eps_delta: float = 0.5, n_cycles: int = 2,
                 feedback_order: str = "after_update", target: str = "numpy", chunk: int = 256, dt=None,
                 name: str = "amit", record: bool = True):
        self.target = check_target(target)
        self.name = check_name(name)
        self.dt = _default_dt() if dt is None else check_dt(dt)
        self.sizes = check_sizes(sizes)
        L = len(self.sizes) - 1
        self.eta = check_range("eta", eta, 0.0, None)
        self.epsilon = URFB(epsilon).epsilon
        self.output_params = OutputErrorParams(M=M, S=1.0, mu=mu, epsilon=eps_delta)
        self.mu = self.output_params.mu
        self.K = check_range("K", K, 0.0, None, lo_open=True)
        self.feedback_order = check_choice("feedback_order", feedback_order, FEEDBACK_ORDERS)
        self.n_cycles = int(n_cycles)
        if self.n_cycles < 1:
            raise ValueError(f"n_cycles must be ≥ 1, got {n_cycles}")
        self.chunk = int(chunk)
        if self.chunk < 1:
            raise ValueError(f"chunk must be ≥ 1, got {chunk}")
        self.transfers = default_transfers(L)

        rng = None
        if W0s is None or R0s is None or (sparsity is not None and (wmasks is None or rmasks is None)):
            if seed is None:
                raise ValueError("pass W0s, R0s (and masks) or a seed: randomness is always explicit")
            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        if W0s is None or R0s is None:
            Wr, Rr, _, _ = random_init(self.sizes, rng)
            W0s = Wr if W0s is None else W0s
            R0s = Rr if R0s is None else R0s
        if sparsity is not None:
            from plasticity.connectivity import random_mask

            if wmasks is None:
                wmasks = [random_mask(np.shape(W), sparsity, rng) for W in W0s]
            if rmasks is None:
                rmasks = [random_mask(np.shape(R), sparsity, rng) for R in R0s]
        W0s = [np.asarray(W, dtype=np.float64) for W in W0s]
        R0s = [np.asarray(R, dtype=np.float64) for R in R0s]
        if len(W0s) != L or len(R0s) != L:
            raise ValueError(f"need {L} W and {L} R matrices for sizes {self.sizes}")
        for l in range(L):
            want = (self.sizes[l + 1], self.sizes[l])
            if W0s[l].shape != want or R0s[l].shape != want[::-1]:
                raise ValueError(f"layer {l + 1}: W must be {want} and R {want[::-1]}, got "
                                 f"{W0s[l].shape} and {R0s[l].shape}")
        self.wmasks = None if wmasks is None else [np.asarray(m, dtype=np.float64) for m in wmasks]
        self.rmasks = None if rmasks is None else [np.asarray(m, dtype=np.float64) for m in rmasks]

        with codegen_target(self.target):  # connect() generates code
            self._build(W0s, R0s, name, record)

    def _build(self, W0s, R0s, name, record):
        b2 = _b2()
        L = len(self.sizes) - 1
        # ---- populations -------------------------------------------------------------------
        dt = self.dt
        groups = [b2.NeuronGroup(self.sizes[0], LAYER_INPUT_EQS, method="euler", dt=dt, name=f"{name}_layer0")]
        for l in range(1, L):
            groups.append(b2.NeuronGroup(self.sizes[l], LAYER_HIDDEN_EQS, method="euler", dt=dt,
                                         name=f"{name}_layer{l}"))
        groups.append(b2.NeuronGroup(self.sizes[L], LAYER_OUTPUT_EQS, method="euler", dt=dt, name=f"{name}_layer{L}"))
        syns = []
        for l in range(1, L + 1):
            syns.append(build_mirrored_synapses(
                groups[l - 1], groups[l], W0s[l - 1], R0s[l - 1],
                wmask=None if self.wmasks is None else self.wmasks[l - 1],
                rmask=None if self.rmasks is None else self.rmasks[l - 1],
                feedback=l >= 2, name=f"{name}_syn{l}"))
        self.groups, self.synapses = groups, syns
        self.input_group, self.output_group = groups[0], groups[-1]

        # ---- schedule: every phase an explicit slot -----------------------------------------
        counter = itertools.count()
        self.schedule: list[_Slot] = []

        def regular(group, code, what, tag):
            o = next(counter)
            runner = group.run_regularly(code, when="groups", order=o, name=f"{name}_{tag}")
            self.schedule.append(_Slot(o, what, runner))

        def place(runner, what):
            runner.when, runner.order = "groups", next(counter)
            self.schedule.append(_Slot(runner.order, what, runner))

        out = groups[L]
        regular(groups[0], INPUT_PRESENT, "present x_0 (eq. 1)", "present")
        regular(out, SUPERVISE, "supervisory s_c; t_c = 0 (App. 1)", "supervise")
        for l in range(1, L + 1):
            place(syns[l - 1].summed_updaters["a_post"], f"h_{l} = W_{l} x_{l - 1} (eq. 1)")
            if l < L:
                regular(groups[l], SATLIN.format(y="y", a="a"), f"x_{l} = satlin(h_{l}) (Remark 2)", f"ff{l}")
            else:
                regular(out, LINEAR, f"x_{L} = h_{L} (linear output)", f"ff{l}")
        regular(out, H_CHECK, f"check |h_{L}| < M (App. 1)", "hcheck")
        for c in range(self.n_cycles):
            regular(out, OUTPUT_DELTA, f"cycle {c + 1}: delta_c = sigma_delta(H_c)", f"delta{c}")
            regular(out, OUTPUT_T, f"cycle {c + 1}: t_c = sigma_t(delta_c)", f"t{c}")
        regular(out, OUTPUT_READ, f"x_{L} <- delta_{L} = delta_c 1[t_c = 0] (read, eq. 6)", "read")
        for l in range(L, 0, -1):
            S, below = syns[l - 1], groups[l - 1]
            hebb = next(o for o in S.contained_objects if o.name == f"{name}_syn{l}_hebb")
            if l >= 2 and self.feedback_order == "before_update":
                place(S.summed_updaters["fb_pre"], f"fb_{l - 1} = R_{l} delta_{l} (old R_{l})")
            place(hebb, f"W_{l} += eta delta_{l} x_{l - 1}^T; R_{l} += eps eta x_{l - 1} delta_{l}^T")
            if l >= 2:
                regular(below, CONTROL.format(x="y"), f"u_{l - 1}, v_{l - 1} from x_{l - 1} (App. 1)", f"control{l - 1}")
                if self.feedback_order == "after_update":
                    place(S.summed_updaters["fb_pre"], f"fb_{l - 1} = R_{l} delta_{l} (updated R_{l}, Fig. 15)")
                regular(below, HIDDEN_GATE, f"x_{l - 1} <- delta_{l - 1} = sigma_K(fb - 2Ku + 2Kv) (eq. 3)",
                        f"gate{l - 1}")

        self._x_in = b2.TimedArray(np.zeros((self.chunk, self.sizes[0])), dt=dt, name=f"{name}_x_in")
        self._s_in = b2.TimedArray(np.zeros((self.chunk, self.sizes[L])), dt=dt, name=f"{name}_s_in")
        objs = [*groups, *syns]
        self.monitor = None
        if record:
            self.monitor = b2.StateMonitor(out, ["a", "y"], record=True, when="end", dt=dt, name=f"{name}_outmon")
            objs.append(self.monitor)
        self.network = b2.Network(*objs, name=f"{name}_net")
        self._namespace = {
            "x_in": self._x_in, "s_in": self._s_in, "eta": self.eta, "epsilon": self.epsilon,
            "K": self.K, **self.output_params.namespace(),
        }

    # ------------------------------------------------------------------------------------------
    def describe_schedule(self) -> str:
        """The per-example schedule, one slot per line (order: what)."""
        return "\n".join(f"{s.order:3d}: {s.what}" for s in self.schedule)

    def weights(self):
        """``(Ws, Rs)`` as float64 arrays: W_l (d_l, d_{l−1}), R_l (d_{l−1}, d_l)."""
        return ([get_weights(S, "w") for S in self.synapses], [get_feedback(S, "r") for S in self.synapses])

    def _reset_checks(self):
        self.output_group.h_peak = 0.0
        for g in self.groups[1:-1]:
            g.kviol = 0.0
            g.fb_peak = 0.0

    def _check_bounds(self, first: int, count: int):
        hp = float(np.max(self.output_group.h_peak[:]))
        if hp >= self.output_params.M:
            raise ValueError(
                f"output bound violated in examples {first}..{first + count - 1}: |h_L| reached {hp:g} but the "
                f"output error circuit computes eq. 6 only for |h| < M = {self.output_params.M:g} (increase M)")
        for l, g in enumerate(self.groups[1:-1], start=1):
            if float(np.sum(g.kviol[:])) > 0:
                raise ValueError(
                    f"feedback bound violated in layer {l}, examples {first}..{first + count - 1}: |R delta| reached "
                    f"{float(np.max(g.fb_peak[:])):g} but the shut-down circuit equals eq. 3 only for "
                    f"-K <= R delta < K (K = {self.K:g}; increase K)")

    def _run(self, X, labels, learn: bool) -> TrainRecord:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"x must be (n, {self.sizes[0]}), got {X.shape}")
        C = self.sizes[-1]
        if labels is None:
            labels = np.zeros(len(X), dtype=int)
        labels = np.asarray(labels)
        S_all = supervisory(labels, C)
        if S_all.shape[0] != X.shape[0]:
            raise ValueError(f"need one label per example: {S_all.shape[0]} labels for {X.shape[0]} examples")
        outs, dels = [], []
        for start in range(0, len(X), self.chunk):
            k = min(self.chunk, len(X) - start)
            self._x_in.values[:k] = X[start:start + k]
            self._s_in.values[:k] = S_all[start:start + k]
            self._reset_checks()
            ns = dict(self._namespace, t0=self.network.t, eta=self.eta if learn else 0.0)
            n_before = 0 if self.monitor is None else len(self.monitor.t)
            with codegen_target(self.target):
                self.network.run(k * self.dt, namespace=ns)
            self._check_bounds(start, k)
            if self.monitor is not None:
                outs.append(np.asarray(self.monitor.a[:, n_before:]).T)
                dels.append(np.asarray(self.monitor.y[:, n_before:]).T)
        if self.monitor is None:
            return TrainRecord(np.zeros((0, C)), np.zeros((0, C)))
        return TrainRecord(np.concatenate(outs) if outs else np.zeros((0, C)),
                           np.concatenate(dels) if dels else np.zeros((0, C)))

    def train(self, x, labels) -> TrainRecord:
        """Learn online from ``x`` (n, d_0) with class ``labels`` (n,), one example per step, in order.

        Returns a :class:`TrainRecord` (empty when built with ``record=False``).
        """
        return self._run(x, labels, learn=True)

    def predict(self, x) -> np.ndarray:
        """Outputs h_L (n, C) of the circuit with plasticity off (η = 0 in the namespace)."""
        if self.monitor is None:
            Ws, _ = self.weights()
            return forward(Ws, None, np.asarray(x, dtype=np.float64), self.transfers).output
        return self._run(x, None, learn=False).outputs

    def evaluate(self, x, labels):
        """``(mean hinge loss, accuracy)`` of the current weights, computed with the matrix forward."""
        Ws, _ = self.weights()
        y = forward(Ws, None, np.asarray(x, dtype=np.float64), self.transfers).output
        labels = np.asarray(labels)
        return float(np.mean(Hinge(self.mu).value(y, labels))), float(np.mean(np.argmax(y, 1) == labels))


__all__ = [
    "SIGMA_DELTA", "SIGMA_T", "READ_RULE", "OUTPUT_ERROR_EQS", "SHUTDOWN_EQS", "LAYER_INPUT_EQS",
    "LAYER_HIDDEN_EQS", "LAYER_OUTPUT_EQS", "MIRRORED_SYNAPSES", "MIRRORED_FEEDBACK", "MIRRORED_HEBB",
    "OutputErrorCircuit", "build_output_error_circuit", "output_error_signal", "output_regimes",
    "ShutdownResult", "feedback_shutdown", "build_mirrored_synapses", "mirrored_update",
    "TrainRecord", "LayeredCircuit",
]
