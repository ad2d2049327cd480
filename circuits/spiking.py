"""Spiking twins of the rate circuits: Amit (2021) Appendix 1 and §3.1, Podlaski & Machens (2020).

Every circuit here is built from one neuron model and one coding convention, and each has a rate
circuit as its twin (:mod:`circuits.amit`, :mod:`circuits.controller`); the statistical
cross-checks live in :mod:`bridge.checks.spiking`.

Neuron model: the Poisson integrate-and-fire neuron
---------------------------------------------------
A perfect (non-leaky) integrator is charged at ``dv/dt = ρ·v_th`` and fires when ``v`` exceeds a
threshold ``θ`` that is drawn from an exponential distribution with mean ``v_th`` and redrawn at
each spike; the reset subtracts the threshold that was crossed (``v -= θ``).  By the
time-rescaling theorem the spike train is an inhomogeneous Poisson process with intensity ρ(t):
in operational time ∫ρ dt the inter-spike intervals are exactly Exp(1).  Because the overshoot is
carried over, the time grid only delays spikes and never loses them, so the mean count over a
window is exactly ∫ρ dt.  An absolute refractory period (``refractory=``, 1 ms) only postpones a
spike that is due (the charge keeps accumulating), so it leaves the mean rate unchanged for
ρ < 1/τ_ref and makes the count *less* variable than Poisson: tolerances derived from Poisson
counting statistics are upper bounds.

Signed quantities: ON/OFF pairs
-------------------------------
A signed value x of one unit is carried by two populations of ``n_per`` neurons each, ON with
intensity ``ν·[x]₊`` and OFF with ``ν·[−x]₊`` (rates are positive); the unit's decoded value over
a window T is ``x̂ = (n_ON − n_OFF) / (n_per·ν·T)`` (:func:`decode_windows`).  One
``NeuronGroup`` holds all units of a quantity, neuron index ``(unit·2 + polarity)·n_per + k``
(polarity 0 = ON, 1 = OFF), with per-neuron constants ``unit`` and ``sgn`` (±1).  For counting
statistics, ``Var(x̂) = |x| / (n_per·ν·T)``.

Every neuron of a unit receives the same synaptic input, so each unit's summed input lives once,
in an *input node* (a one-per-unit group, the population's shared dendritic sum): real
``Synapses`` with ``on_pre`` carry the spikes of the presynaptic populations onto it, and the
neurons read the node's coded value through a linked variable.  This is exactly all-to-all
connectivity with identical weights, at 1/(2·n_per) of the synapses.

Circuits
--------
* :class:`SpikingOutputError` — Appendix 1, Fig. 13–14: δ_c and t_c as ON/OFF populations whose
  rates are σ_δ(H_c) and σ_t(δ̂_c); the half-steps of the rate circuit are alternating windows
  (δ window, t window); the learning signal (eq. 6) is read from spike counts.
* :class:`SpikingShutdown` — eq. 3 and Appendix 1: the control units (u, v) as one ON/OFF pair
  c = u + v firing from the feed-forward input, then the gated feedback σ_K(δ − 2K û + 2K v̂).
* :class:`SpikingHebbian` — §3.1 mirrored synapses: one ``Synapses`` object per layer pair carrying
  feed-forward ``w`` and feedback ``r``, both changed by the same pre×post trace product in the
  same ``on_pre``/``on_post`` statements; E[ΔW] = η·δ·xᵀ (eq. 2), ΔR = ε·ΔWᵀ exactly.
* :class:`SpikingController` — Podlaski & Machens eq. 5 and 8 (14 with linear g): δ and u as ON/OFF
  Poisson populations with rates ∝ state; each unit's state integrates the spikes of the other
  population (delta-pulse synapses), so the mean dynamics are the rate controller's.

Conventions: Brian2 units (ms, mV, Hz); ``method='euler'`` named everywhere; parameters are
passed as each object's own ``namespace=`` (so two circuits with different parameters can share
one ``Network``); every object is named with the circuit's ``name`` prefix; ``target`` chooses
the code-generation target for the circuit's runs (:func:`circuits._brian.codegen_target`).
Brian2's ``rand()`` has a single global stream: :meth:`run` seeds it with ``brian2.seed(seed)``
at the first run; initial thresholds come from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plasticity.amit import OutputErrorParams, supervisory

from ._brian import check_target, codegen_target
from .amit import SIGMA_DELTA


def _b2():
    import brian2

    return brian2


# =============================================================================================
# Equations (the neuron model and the coding convention)
# =============================================================================================

#: Poisson integrate-and-fire neuron of an ON/OFF population (module docstring).  ``value`` and
#: ``gate`` are linked to the unit's input node; ρ = ν·[sgn·value]₊·gate.
POP_EQS = """
dv/dt = rho*vth : volt                          # perfect integrator charged at the intensity
theta : volt                                    # threshold ~ Exp(mean vth), redrawn at each spike
unit : integer (constant)                       # the unit this neuron codes for
sgn : 1 (constant)                              # +1 ON population, -1 OFF population
value : 1 (linked)                              # the unit's coded value (input node)
gate : 1 (linked)                               # 1 while the population's window is open
rho = nu*clip(sgn*value, 0, inf)*gate : Hz      # intensity: nu [+-value]_+
"""
THRESHOLD = "v > theta"
#: subtract the crossed threshold (no charge is lost) and redraw it: exact Poisson counts
RESET = "v -= theta\ntheta = -log(1 - rand())*vth"
METHOD = "euler"

#: spikes of an ON/OFF population summed onto an input node: each spike adds ±1/(n_per·ν·T_w),
#: so over a window the node holds the decoded value x̂ (counts → value).
COUNT_ON_PRE = "acc_post += sgn_pre*wdec"
#: the same for the t → δ path of the output circuit (a separate constant so that it can be
#: perturbed alone)
COUNT_T_ON_PRE = "acc_post += sgn_pre*wdec"

#: a windowed input node: ``win`` counts windows, ``gate`` opens on windows ≡ offset (mod period)
NODE_WINDOW = """
acc : 1                                         # spike count of the presynaptic unit, decoded
value : 1                                       # coded value, recomputed at each window start
gate : 1                                        # 1 while this population's window is open
win : integer                                   # index of the current window
"""
NODE_LATCH = "win += 1\ngate = int(win % period == offset)\n{latch}\nacc = 0\nvalue = {value}"

#: Output error circuit, δ_c node (App. 1): H_c = h_c + 2M s_c − 2M t̂_c with t̂ from the t window
OUT_DELTA_NODE = NODE_WINDOW + """
h : 1 (constant)                                # h_c = <W_c, x> (App. 1)
s : 1 (constant)                                # supervisory unit s_c (+1 class, -1 otherwise)
that : 1                                        # t_c decoded from the last t window
"""
OUT_DELTA_LATCH = NODE_LATCH.format(latch="that = acc",
                                    value=SIGMA_DELTA.format(H="(h + 2*M*s - 2*M*that)"))
#: σ_t on the spike-decoded δ̂: thresholds at the midpoints 1 + ε/2 and −μ − ε/2 between the values
#: σ_δ can take (1 | 1+ε and −μ | −μ−ε), so on those values it is σ_t (Fig. 13 right) and a
#: counting error smaller than ε/2 does not change it.
SIGMA_T_SPIKING = "(int({x} > 1 + eps_delta/2) - int({x} < -mu - eps_delta/2))"
OUT_T_NODE = NODE_WINDOW + """
dhat : 1                                        # delta_c decoded from the last delta window
"""
OUT_T_LATCH = NODE_LATCH.format(latch="dhat = acc", value=SIGMA_T_SPIKING.format(x="dhat"))

#: Shut-down (eq. 3, App. 1): control unit c = u + v, u = 1[x ≥ 1], v = −1[x ≤ −1], x = satlin(a)
SHUT_CONTROL_NODE = NODE_WINDOW + """
a : 1 (constant)                                # feed-forward input h_{l,i} (eq. 1)
"""
SHUT_CONTROL_LATCH = NODE_LATCH.format(latch="", value="int(a >= 1) - int(a <= -1)")
#: gated unit: σ_K(z), z = δ − 2K û + 2K v̂ (App. 1).  The ON population codes u ≥ 0 and the OFF
#: population codes −v ≥ 0, so û − v̂ is the *total* count of the pair: both inhibit the gated unit.
SHUT_ON_PRE = "acc_post += wdec"
SHUT_GATE_NODE = NODE_WINDOW + """
fb : 1 (constant)                               # top-down feedback delta_{l,i}, |delta| < K
uv : 1                                          # u - v decoded from the control window
"""
SHUT_GATE_LATCH = NODE_LATCH.format(latch="uv = acc",
                                    value="(fb - 2*K*uv)*int(fb - 2*K*uv >= -K)")

#: Mirrored Hebbian synapses (§3.1) between neuron k of presynaptic unit i (polarity p) and neuron
#: l of postsynaptic unit j (polarity q): all-to-all pair-based traces; ``s = s_p·s_q`` signs the
#: product so that summed over the four polarity pairs E[ΔW_ji] ∝ x_i·δ_j.
HEBB_EQS = """
w : 1                                           # feed-forward share of W_{l,ji}
r : 1                                           # feedback share of R_{l,ij}
s : 1 (constant)                                # sgn_pre * sgn_post
dapre/dt = -apre/tau_pre : 1 (event-driven)     # presynaptic trace
dapost/dt = -apost/tau_post : 1 (event-driven)  # postsynaptic trace
"""
#: one increment dw per spike pair, written into both weights in the same statement block
HEBB_ON_PRE = "apre += 1\ndw = s*A*apost\nw += dw\nr += epsilon*dw"
HEBB_ON_POST = "apost += 1\ndw = s*A*apre\nw += dw\nr += epsilon*dw"

#: Controller (Podlaski & Machens eq. 5): τ dδ/dt = −δ + B u; the B u term arrives as spikes
#: of the u populations (each adds B_ij·sgn/(n_per·ν_u·τ) to δ_i): its mean is B u/τ.
CTRL_DELTA_NODE = """
ddelta/dt = -delta/tau : 1                      # eq. 5 leak; B u arrives through on_pre
value = delta : 1
gate : 1 (constant)
"""
#: eq. 8 / 14 (linear g): τ du/dt = −α u + W δ − δ_l; W δ arrives as spikes of the δ populations
CTRL_U_NODE = """
du/dt = (-alpha*u - target)/tau : 1             # eq. 8 leak and target; W delta through on_pre
target : 1 (constant)                           # delta_l (paper's sign, as circuits.controller)
value = u : 1
gate : 1 (constant)
"""
CTRL_FB_ON_PRE = "delta_post += b*sgn_pre/(n_per*nu_src*tau)"
CTRL_FF_ON_PRE = "u_post += w*sgn_pre/(n_per*nu_src*tau)"


# =============================================================================================
# Building blocks
# =============================================================================================


def _defaults(dt, tau_ref, vth):
    b2 = _b2()
    return (0.25 * b2.ms if dt is None else dt, 1.0 * b2.ms if tau_ref is None else tau_ref,
            10.0 * b2.mV if vth is None else vth)


def signed_population(n_units: int, n_per: int, *, nu, name: str, dt, rng: np.random.Generator,
                      tau_ref=None, vth=None):
    """An ON/OFF ``NeuronGroup`` of Poisson integrate-and-fire neurons for ``n_units`` signed units.

    ``value`` and ``gate`` are linked variables: link them with :func:`link_to_node`.
    """
    b2 = _b2()
    dt, tau_ref, vth = _defaults(dt, tau_ref, vth)
    n_per = int(n_per)
    if n_per < 1:
        raise ValueError(f"n_per must be ≥ 1, got {n_per}")
    G = b2.NeuronGroup(n_units * 2 * n_per, POP_EQS, threshold=THRESHOLD, reset=RESET, refractory=tau_ref,
                       method=METHOD, dt=dt, name=name, namespace={"nu": nu, "vth": vth})
    G.unit = np.repeat(np.arange(n_units), 2 * n_per)
    G.sgn = np.tile(np.repeat([1.0, -1.0], n_per), n_units)
    G.theta = rng.exponential(size=G.N) * vth
    return G


def link_to_node(pop, node) -> None:
    """Link ``value`` and ``gate`` of every neuron of ``pop`` to its unit's entry in ``node``."""
    b2 = _b2()
    pop.value = b2.linked_var(node, "value", index="unit")
    pop.gate = b2.linked_var(node, "gate", index="unit")


def windowed_node(n_units: int, eqs: str, latch: str, *, window, period: int, offset: int, name: str, dt,
                  namespace: dict):
    """An input node whose ``latch`` code runs at the start of every window (slot ``start``):
    it reads the spike count accumulated over the previous window, recomputes the coded value
    and opens the population's ``gate`` on windows ≡ ``offset`` (mod ``period``)."""
    b2 = _b2()
    ns = dict(namespace, period=int(period), offset=int(offset))
    node = b2.NeuronGroup(n_units, eqs, method=METHOD, dt=dt, name=name, namespace=ns)
    node.win = -1
    node.run_regularly(latch, dt=window, when="start", order=0, name=f"{name}_latch")
    return node


def count_synapses(pop, node, *, wdec, name: str, on_pre: str = COUNT_ON_PRE):
    """``Synapses`` from every neuron of ``pop`` onto its unit's entry of ``node`` (``acc``)."""
    b2 = _b2()
    S = b2.Synapses(pop, node, on_pre=on_pre, dt=pop.clock.dt, name=name, namespace={"wdec": float(wdec)})
    S.connect(i=np.arange(pop.N), j=np.asarray(pop.unit[:]))
    return S


def window_counts(monitor, n_neurons: int, window, n_windows: int, dt, start=None) -> np.ndarray:
    """Spike counts (n_windows, n_neurons) of a ``SpikeMonitor``, window w = [t₀ + w·T, t₀ + (w+1)·T)
    with t₀ = ``start`` (default 0); spike times are counted on the time-step grid."""
    steps = int(round(float(window / dt)))
    k = np.round(np.asarray(monitor.t / dt)).astype(np.int64)
    if start is not None:
        k = k - int(round(float(start / dt)))
    w = np.where(k >= 0, k // steps, -1)
    i = np.asarray(monitor.i[:], dtype=np.int64)
    keep = (w >= 0) & (w < n_windows)
    out = np.zeros((n_windows, n_neurons))
    np.add.at(out, (w[keep], i[keep]), 1.0)
    return out


def decode_windows(counts, n_units: int, n_per: int, nu, window) -> np.ndarray:
    """ON/OFF counts (…, n_units·2·n_per) → decoded values (…, n_units): (n_ON − n_OFF)/(n_per ν T)."""
    c = np.asarray(counts).reshape(*np.shape(counts)[:-1], n_units, 2, n_per).sum(-1)
    return (c[..., 0] - c[..., 1]) / (n_per * float(nu * window))


class _Circuit:
    """Shared handle behaviour: ``network`` (a ``brian2.Network``), ``run``, seeding, target."""

    network = None
    seed = 0
    target = "numpy"
    _seeded = False

    def _run(self, duration):
        b2 = _b2()
        if not self._seeded:
            b2.seed(self.seed)
            self._seeded = True
        with codegen_target(self.target):
            self.network.run(duration, namespace={})


# =============================================================================================
# a. Output error circuit (Amit App. 1, Fig. 13–14)
# =============================================================================================


class SpikingOutputError(_Circuit):
    """The output error microcircuit of Appendix 1 (Fig. 14) with spiking δ_c and t_c.

    Units: one (δ_c, t_c) pair per (example, class).  Half-step k of the rate circuit
    (:func:`circuits.amit.output_error_signal`) becomes window k of length ``window``:

    * even k (δ window): the δ populations fire at ``ν·[±σ_δ(H_c)]₊`` with
      ``H_c = h_c + 2M s_c − 2M t̂_c`` (App. 1), t̂_c decoded from the t spikes of window k−1
      (0 before the first t window: t_c is initialised at 0);
    * odd k (t window): the t populations fire at ``ν_t·[±σ_t(δ̂_c)]₊`` (:data:`SIGMA_T_SPIKING`),
      δ̂_c decoded from the δ spikes of window k−1.

    The regimes (constant 1, constant −μ, oscillation 1+ε ↔ 0 or −μ−ε ↔ 0) appear in the δ
    population rates, window by window.  The learning signal of cycle n is read from spike counts
    (reading rule of :mod:`plasticity.amit`): ``e = δ̂·1[|t̂| < ½]`` with δ̂ from window 2n and t̂
    from window 2n+1; its expectation is eq. 6 as long as counting errors stay below the margins
    (ε/2 for σ_t, M − |h| over 2M for σ_δ).

    Handle: ``delta_pop``, ``t_pop`` (ON/OFF ``NeuronGroup``\\ s), ``delta_node``, ``t_node`` (input
    nodes), ``synapses`` and ``monitors`` (``SpikeMonitor``\\ s), ``network``.
    """

    def __init__(self, h, labels, params: OutputErrorParams | None = None, *, n_cycles: int = 4, n_per: int = 40,
                 nu=None, nu_t=None, window=None, seed: int = 0, dt=None, tau_ref=None, name: str = "spk_out",
                 target: str = "numpy"):
        b2 = _b2()
        self.params = OutputErrorParams(M=4.0, S=1.0, mu=1.0, epsilon=0.5) if params is None else params
        if self.params.S != 1.0:
            raise ValueError("the spiking output circuit implements eq. 6 (S = 1)")
        self.h = self.params.check_h(h)
        if self.h.ndim != 2:
            raise ValueError(f"h must be (n, C), got shape {self.h.shape}")
        self.labels = np.asarray(labels)
        s = supervisory(self.labels, self.h.shape[1])
        if s.shape != self.h.shape:
            raise ValueError(f"need one label per row of h: {s.shape[0]} labels for {self.h.shape[0]} rows")
        self.n_cycles, self.n_per, self.seed = int(n_cycles), int(n_per), int(seed)
        self.target = check_target(target)
        self.nu = 100.0 * b2.Hz if nu is None else nu
        self.nu_t = self.nu if nu_t is None else nu_t
        self.window = 100.0 * b2.ms if window is None else window
        self.dt, tau_ref, vth = _defaults(dt, tau_ref, None)
        K = self.h.size
        self.n_units = K
        rng = np.random.default_rng(self.seed)
        ns = self.params.namespace()
        self.delta_node = windowed_node(K, OUT_DELTA_NODE, OUT_DELTA_LATCH, window=self.window, period=2, offset=0,
                                        name=f"{name}_delta_in", dt=self.dt, namespace=ns)
        self.delta_node.h = self.h.ravel()
        self.delta_node.s = s.ravel()
        self.t_node = windowed_node(K, OUT_T_NODE, OUT_T_LATCH, window=self.window, period=2, offset=1,
                                    name=f"{name}_t_in", dt=self.dt, namespace=ns)
        self.delta_pop = signed_population(K, self.n_per, nu=self.nu, name=f"{name}_delta", dt=self.dt, rng=rng,
                                           tau_ref=tau_ref, vth=vth)
        self.t_pop = signed_population(K, self.n_per, nu=self.nu_t, name=f"{name}_t", dt=self.dt, rng=rng,
                                       tau_ref=tau_ref, vth=vth)
        link_to_node(self.delta_pop, self.delta_node)
        link_to_node(self.t_pop, self.t_node)
        self.synapses = {
            "delta_to_t": count_synapses(self.delta_pop, self.t_node, wdec=1.0 / (self.n_per * float(self.nu * self.window)),
                                         name=f"{name}_delta_to_t"),
            "t_to_delta": count_synapses(self.t_pop, self.delta_node,
                                         wdec=1.0 / (self.n_per * float(self.nu_t * self.window)),
                                         name=f"{name}_t_to_delta", on_pre=COUNT_T_ON_PRE),
        }
        self.monitors = {"delta": b2.SpikeMonitor(self.delta_pop, name=f"{name}_delta_spikes"),
                         "t": b2.SpikeMonitor(self.t_pop, name=f"{name}_t_spikes")}
        self.network = b2.Network(self.delta_node, self.t_node, self.delta_pop, self.t_pop, *self.synapses.values(),
                                  *self.monitors.values(), name=f"{name}_net")
        self.windows_run = 0

    @property
    def objects(self) -> list:
        """Every Brian2 object of the circuit (to add it to another ``Network``)."""
        return list(self.network.objects)

    def run(self, n_cycles: int | None = None):
        """Run ``n_cycles`` δ/t cycles (two windows each; default: all ``n_cycles``)."""
        n = self.n_cycles if n_cycles is None else int(n_cycles)
        self._run(2 * n * self.window)
        self.windows_run += 2 * n
        return self

    def decoded(self, which: str = "delta") -> np.ndarray:
        """Window-by-window decoded values (n_windows, n, C) of the ``'delta'`` or ``'t'`` populations."""
        nu = self.nu if which == "delta" else self.nu_t
        pop = self.delta_pop if which == "delta" else self.t_pop
        c = window_counts(self.monitors[which], pop.N, self.window, self.windows_run, self.dt)
        return decode_windows(c, self.n_units, self.n_per, nu, self.window).reshape(-1, *self.h.shape)

    def rates(self, which: str = "delta") -> np.ndarray:
        """Population rates in Hz (n_windows, n, C, 2): ON and OFF, per window."""
        pop = self.delta_pop if which == "delta" else self.t_pop
        c = window_counts(self.monitors[which], pop.N, self.window, self.windows_run, self.dt)
        c = c.reshape(-1, *self.h.shape, 2, self.n_per).sum(-1)
        return c / (self.n_per * float(self.window))

    def reads(self) -> np.ndarray:
        """The learning signal of every cycle read from spike counts, (n_cycles_run, n, C)."""
        d, t = self.decoded("delta"), self.decoded("t")
        return d[0::2] * (np.abs(t[1::2]) < 0.5)

    def signal(self) -> np.ndarray:
        """The read of the last cycle (n, C): the spiking estimate of eq. 6."""
        return self.reads()[-1]


# =============================================================================================
# b. Feedback shut-down (eq. 3, App. 1)
# =============================================================================================


class SpikingShutdown(_Circuit):
    """Eq. 3 with spiking control and gated units (Appendix 1, Fig. 15 "second" and "third").

    Window 0: the control pair c = u + v fires at ``ν·[±c]₊`` with u = 1[x ≥ 1], v = −1[x ≤ −1]
    from the feed-forward input ``a`` (x = satlin(a); only one of u, v can be active, so one ON/OFF
    pair carries both: ON codes u, OFF codes −v).  Window 1: the gated pair fires at
    ``ν_g·[±σ_K(z)]₊``, ``z = δ − 2K û + 2K v̂`` with û − v̂ the pair's total count over window 0
    (:data:`SHUT_ON_PRE`: both populations inhibit).  A silent control pair gives û − v̂ = 0 exactly
    and the gated unit codes δ; an active one gives z ≤ −K (for δ ≤ K − 2K·|û − v̂ − 1|) and the
    gated pair is silent.
    """

    def __init__(self, delta, a, K: float = 4.0, *, n_per: int = 40, nu=None, nu_g=None, window=None,
                 seed: int = 0, dt=None, tau_ref=None, name: str = "spk_shut", target: str = "numpy"):
        b2 = _b2()
        self.delta = np.asarray(delta, dtype=np.float64)
        self.a = np.asarray(a, dtype=np.float64)
        if self.delta.shape != self.a.shape:
            raise ValueError(f"delta and a must have one shape, got {self.delta.shape} and {self.a.shape}")
        self.K, self.n_per, self.seed = float(K), int(n_per), int(seed)
        self.target = check_target(target)
        self.nu = 100.0 * b2.Hz if nu is None else nu
        self.nu_g = self.nu if nu_g is None else nu_g
        self.window = 100.0 * b2.ms if window is None else window
        self.dt, tau_ref, vth = _defaults(dt, tau_ref, None)
        n = self.delta.size
        self.n_units = n
        rng = np.random.default_rng(self.seed)
        self.control_node = windowed_node(n, SHUT_CONTROL_NODE, SHUT_CONTROL_LATCH, window=self.window, period=2,
                                          offset=0, name=f"{name}_control_in", dt=self.dt, namespace={})
        self.control_node.a = self.a.ravel()
        self.gate_node = windowed_node(n, SHUT_GATE_NODE, SHUT_GATE_LATCH, window=self.window, period=2, offset=1,
                                       name=f"{name}_gated_in", dt=self.dt, namespace={"K": self.K})
        self.gate_node.fb = self.delta.ravel()
        self.control_pop = signed_population(n, self.n_per, nu=self.nu, name=f"{name}_control", dt=self.dt, rng=rng,
                                             tau_ref=tau_ref, vth=vth)
        self.gated_pop = signed_population(n, self.n_per, nu=self.nu_g, name=f"{name}_gated", dt=self.dt, rng=rng,
                                           tau_ref=tau_ref, vth=vth)
        link_to_node(self.control_pop, self.control_node)
        link_to_node(self.gated_pop, self.gate_node)
        self.synapses = {"control_to_gated": count_synapses(
            self.control_pop, self.gate_node, wdec=1.0 / (self.n_per * float(self.nu * self.window)),
            name=f"{name}_control_to_gated", on_pre=SHUT_ON_PRE)}
        self.monitors = {"control": b2.SpikeMonitor(self.control_pop, name=f"{name}_control_spikes"),
                         "gated": b2.SpikeMonitor(self.gated_pop, name=f"{name}_gated_spikes")}
        self.network = b2.Network(self.control_node, self.gate_node, self.control_pop, self.gated_pop,
                                  *self.synapses.values(), *self.monitors.values(), name=f"{name}_net")
        self.windows_run = 0

    def run(self):
        self._run(2 * self.window)
        self.windows_run += 2
        return self

    def decoded(self):
        """``(c_hat, gated_hat)``: the control c = u + v (window 0) and the gated δ (window 1)."""
        cc = window_counts(self.monitors["control"], self.control_pop.N, self.window, 2, self.dt)
        cg = window_counts(self.monitors["gated"], self.gated_pop.N, self.window, 2, self.dt)
        c = decode_windows(cc[0], self.n_units, self.n_per, self.nu, self.window).reshape(self.delta.shape)
        g = decode_windows(cg[1], self.n_units, self.n_per, self.nu_g, self.window).reshape(self.delta.shape)
        return c, g


# =============================================================================================
# c. Mirrored Hebbian synapses with spike-based plasticity (§3.1)
# =============================================================================================


def pair_kernel_integral(tau, dt) -> float:
    """∫K of the trace kernel K(Δ) = exp(−|Δ|/τ) on the time grid: Σ_k dt·e^{−|k|dt/τ} = dt·coth(dt/2τ).

    A pair of spikes in the same step is counted once (whichever of on_pre/on_post runs second)."""
    x = float(dt / tau)
    return float(dt) / np.tanh(x / 2.0)


class SpikingHebbian(_Circuit):
    """Mirrored synapses of §3.1 driven by spiking pre- and postsynaptic ON/OFF populations.

    The presynaptic layer codes x (d_pre units) at ``ν·[±x]₊``, the postsynaptic layer codes δ
    (d_post units) at ``ν·[±δ]₊``, for a presentation window T.  One ``Synapses`` object connects
    every presynaptic neuron to every postsynaptic one and carries ``w`` and ``r``; each pre or
    post spike adds ``dw = s·A·trace`` to both (``r`` with factor ε): pair-based all-to-all
    traces with time constant τ on both sides, so one spike pair at lag Δ contributes
    ``A·e^{−|Δ|/τ}``.  The unit weights are sums over the synapses between the two unit pairs:
    ``W_ji = Σ w``, ``R_ij = Σ r``.  For independent Poisson trains with rates a = n_per·ν·|x_i|
    and b = n_per·ν·|δ_j| (superposed over the population), E[Σ pairs] = a·b·(κT − 2τ²(1 − e^{−T/τ}))
    with κ = :func:`pair_kernel_integral`, so with ``A = η / (n_per²·ν²·(κT − 2τ²(1 − e^{−T/τ})))``

        E[ΔW] = η·δ·xᵀ   (eq. 2, the rate rule Δw = η·post·pre)   and   ΔR = ε·ΔWᵀ exactly (URFB).
    """

    def __init__(self, x_pre, delta_post, W0=None, R0=None, *, eta: float = 0.1, epsilon: float = 1.0,
                 n_per: int = 20, nu=None, window=None, tau=None, seed: int = 0, dt=None, tau_ref=None,
                 name: str = "spk_hebb", target: str = "numpy"):
        b2 = _b2()
        self.x = np.asarray(x_pre, dtype=np.float64).ravel()
        self.delta = np.asarray(delta_post, dtype=np.float64).ravel()
        d_pre, d_post = self.x.size, self.delta.size
        self.W0 = np.zeros((d_post, d_pre)) if W0 is None else np.asarray(W0, dtype=np.float64)
        self.R0 = np.zeros((d_pre, d_post)) if R0 is None else np.asarray(R0, dtype=np.float64)
        if self.W0.shape != (d_post, d_pre) or self.R0.shape != (d_pre, d_post):
            raise ValueError(f"W0 must be {(d_post, d_pre)} and R0 {(d_pre, d_post)}")
        self.eta, self.epsilon = float(eta), float(epsilon)
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
        self.n_per, self.seed = int(n_per), int(seed)
        self.target = check_target(target)
        self.nu = 100.0 * b2.Hz if nu is None else nu
        self.window = 2.0 * b2.second if window is None else window
        self.tau = 10.0 * b2.ms if tau is None else tau
        self.dt, tau_ref, vth = _defaults(dt, tau_ref, None)
        rng = np.random.default_rng(self.seed)
        self.pre_node = b2.NeuronGroup(d_pre, "value : 1 (constant)\ngate : 1 (constant)", method=METHOD, dt=self.dt,
                                       name=f"{name}_pre_in")
        self.post_node = b2.NeuronGroup(d_post, "value : 1 (constant)\ngate : 1 (constant)", method=METHOD,
                                        dt=self.dt, name=f"{name}_post_in")
        self.pre_node.value, self.pre_node.gate = self.x, 1.0
        self.post_node.value, self.post_node.gate = self.delta, 1.0
        self.pre_pop = signed_population(d_pre, self.n_per, nu=self.nu, name=f"{name}_pre", dt=self.dt, rng=rng,
                                         tau_ref=tau_ref, vth=vth)
        self.post_pop = signed_population(d_post, self.n_per, nu=self.nu, name=f"{name}_post", dt=self.dt, rng=rng,
                                          tau_ref=tau_ref, vth=vth)
        link_to_node(self.pre_pop, self.pre_node)
        link_to_node(self.post_pop, self.post_node)
        T, tau_s = float(self.window), float(self.tau)
        self.pairs_per_rate2 = pair_kernel_integral(self.tau, self.dt) * T - 2 * tau_s ** 2 * (1 - np.exp(-T / tau_s))
        self.A = self.eta / (self.n_per ** 2 * float(self.nu) ** 2 * self.pairs_per_rate2)
        S = b2.Synapses(self.pre_pop, self.post_pop, HEBB_EQS, on_pre=HEBB_ON_PRE, on_post=HEBB_ON_POST,
                        method=METHOD, dt=self.dt, name=f"{name}_syn",
                        namespace={"A": self.A, "epsilon": self.epsilon, "tau_pre": self.tau, "tau_post": self.tau})
        S.connect(True)
        ip, jp = np.asarray(S.i[:]), np.asarray(S.j[:])
        self._ui = np.asarray(self.pre_pop.unit[:])[ip]
        self._uj = np.asarray(self.post_pop.unit[:])[jp]
        S.s = np.asarray(self.pre_pop.sgn[:])[ip] * np.asarray(self.post_pop.sgn[:])[jp]
        npair = 4 * self.n_per ** 2  # synapses per unit pair
        S.w = self.W0[self._uj, self._ui] / npair
        S.r = self.R0[self._ui, self._uj] / npair
        self.synapses = S
        self.monitors = {"pre": b2.SpikeMonitor(self.pre_pop, name=f"{name}_pre_spikes"),
                         "post": b2.SpikeMonitor(self.post_pop, name=f"{name}_post_spikes")}
        self.network = b2.Network(self.pre_node, self.post_node, self.pre_pop, self.post_pop, S,
                                  *self.monitors.values(), name=f"{name}_net")

    def run(self):
        """One presentation window."""
        self._run(self.window)
        return self

    def weights(self):
        """``(W, R)``: unit weights W (d_post, d_pre) and R (d_pre, d_post), sums over synapses."""
        W = np.zeros((self.delta.size, self.x.size))
        R = np.zeros((self.x.size, self.delta.size))
        np.add.at(W, (self._uj, self._ui), np.asarray(self.synapses.w[:]))
        np.add.at(R, (self._ui, self._uj), np.asarray(self.synapses.r[:]))
        return W, R

    def expected_std(self) -> np.ndarray:
        """Standard deviation of ΔW (d_post, d_pre) for independent Poisson trains (shot noise):
        Var(Σ pairs) = T·[a·b·∫K² + a·b·(a + b)·(∫K)²], ∫K = 2τ, ∫K² = τ; ΔW = A·Σ pairs."""
        T, tau = float(self.window), float(self.tau)
        a = self.n_per * float(self.nu) * np.abs(self.x)[None, :]
        b = self.n_per * float(self.nu) * np.abs(self.delta)[:, None]
        var = T * (a * b * tau + a * b * (a + b) * (2 * tau) ** 2)
        return self.A * np.sqrt(var)


# =============================================================================================
# d. Leaky-integral controller (Podlaski & Machens eq. 5, 8, 14)
# =============================================================================================


@dataclass
class ControllerNoise:
    """Linear-theory statistics of the spike-decoded controller (see :meth:`SpikingController.noise`)."""

    fixed_point: np.ndarray  # (δ*, u*) concatenated
    window_std: np.ndarray  # std of the decoded window averages (δ̂, û) over a window T at steady state
    latent_std: np.ndarray  # stationary std of the node states (δ, u) around their mean


class SpikingController(_Circuit):
    """One layer's dynamic-inversion controller (Algorithm 1, linear g) with Poisson ON/OFF populations.

    State nodes (one per unit, Podlaski & Machens eq. 5 and 8/14 with g linear):

        τ dδ/dt = −δ + B û,    τ du/dt = −α u + W δ̂ − δ_l

    where û, δ̂ are the *spike trains* of the u and δ populations, decoded by the synapses: each
    spike of u-unit j adds ``B_ij·sgn/(n_per·ν_u·τ)`` to δ_i (and likewise W for u), so the input's
    mean is exactly ``B u/τ``.  The populations fire at ``ν·[±state]₊``; averaged over the noise, the
    dynamics are the rate controller's (:func:`circuits.controller.build_controller`), with the
    same fixed point (NDI's closed form, eq. 10).  ``target`` is δ_l in the paper's sign, as in
    :mod:`circuits.controller`, so the code-generation target is the keyword ``codegen`` here.
    """

    def __init__(self, W, B, target, alpha: float = 0.2, *, n_per: int = 50, nu_delta=None, nu_u=None, tau=None,
                 seed: int = 0, dt=None, tau_ref=None, name: str = "spk_ctrl", codegen: str = "numpy"):
        b2 = _b2()
        self.W = np.asarray(W, dtype=np.float64)
        self.B = np.asarray(B, dtype=np.float64)
        self.target_value = np.asarray(target, dtype=np.float64).ravel()
        d_l, d_p = self.W.shape
        if self.B.shape != (d_p, d_l) or self.target_value.shape != (d_l,):
            raise ValueError(f"W (d_l, d_p) = {self.W.shape} needs B {(d_p, d_l)} and target ({d_l},)")
        self.alpha, self.n_per, self.seed = float(alpha), int(n_per), int(seed)
        self.target = check_target(codegen)
        self.nu_delta = 100.0 * b2.Hz if nu_delta is None else nu_delta
        self.nu_u = 100.0 * b2.Hz if nu_u is None else nu_u
        self.tau = 20.0 * b2.ms if tau is None else tau
        self.dt, tau_ref, vth = _defaults(dt, tau_ref, None)
        rng = np.random.default_rng(self.seed)
        # the nodes step *after* the populations (order=1): within a time step the populations fire
        # from the state the spikes of the last step produced, before its leak; reading it after the
        # leak would bias every rate by the factor (1 − dt/τ)
        self.delta_node = b2.NeuronGroup(d_p, CTRL_DELTA_NODE, method=METHOD, dt=self.dt, name=f"{name}_delta_in",
                                         namespace={"tau": self.tau}, order=1)
        self.u_node = b2.NeuronGroup(d_l, CTRL_U_NODE, method=METHOD, dt=self.dt, name=f"{name}_u_in",
                                     namespace={"tau": self.tau, "alpha": self.alpha}, order=1)
        self.delta_node.gate = 1.0
        self.u_node.gate = 1.0
        self.u_node.target = self.target_value
        self.delta_pop = signed_population(d_p, self.n_per, nu=self.nu_delta, name=f"{name}_delta", dt=self.dt,
                                           rng=rng, tau_ref=tau_ref, vth=vth)
        self.u_pop = signed_population(d_l, self.n_per, nu=self.nu_u, name=f"{name}_u", dt=self.dt, rng=rng,
                                       tau_ref=tau_ref, vth=vth)
        link_to_node(self.delta_pop, self.delta_node)
        link_to_node(self.u_pop, self.u_node)
        common = {"n_per": self.n_per, "tau": self.tau}
        fb = b2.Synapses(self.u_pop, self.delta_node, "b : 1 (constant)", on_pre=CTRL_FB_ON_PRE, dt=self.dt,
                         name=f"{name}_B", namespace=dict(common, nu_src=self.nu_u))
        ui = np.asarray(self.u_pop.unit[:])
        ii, jj = np.meshgrid(np.arange(self.u_pop.N), np.arange(d_p), indexing="ij")
        fb.connect(i=ii.ravel(), j=jj.ravel())
        fb.b = self.B[jj.ravel(), ui[ii.ravel()]]
        ff = b2.Synapses(self.delta_pop, self.u_node, "w : 1 (constant)", on_pre=CTRL_FF_ON_PRE, dt=self.dt,
                         name=f"{name}_W", namespace=dict(common, nu_src=self.nu_delta))
        di = np.asarray(self.delta_pop.unit[:])
        ii, jj = np.meshgrid(np.arange(self.delta_pop.N), np.arange(d_l), indexing="ij")
        ff.connect(i=ii.ravel(), j=jj.ravel())
        ff.w = self.W[jj.ravel(), di[ii.ravel()]]
        self.synapses = {"B": fb, "W": ff}
        self.monitors = {"delta": b2.SpikeMonitor(self.delta_pop, name=f"{name}_delta_spikes"),
                         "u": b2.SpikeMonitor(self.u_pop, name=f"{name}_u_spikes")}
        self.network = b2.Network(self.delta_node, self.u_node, self.delta_pop, self.u_pop, fb, ff,
                                  *self.monitors.values(), name=f"{name}_net")
        self.time_run = 0.0 * b2.second

    def run(self, duration):
        self._run(duration)
        self.time_run += duration
        return self

    def decoded(self, bin_width, start=None):
        """Decoded (δ̂, û) averaged over consecutive bins of ``bin_width`` from ``start`` (default 0):
        arrays (n_bins, d_p) and (n_bins, d_l)."""
        start = 0.0 * bin_width if start is None else start
        nb = int(np.floor(float((self.time_run - start) / bin_width) + 1e-9))
        d_l, d_p = self.W.shape
        cd = window_counts(self.monitors["delta"], self.delta_pop.N, bin_width, nb, self.dt, start)
        cu = window_counts(self.monitors["u"], self.u_pop.N, bin_width, nb, self.dt, start)
        return (decode_windows(cd, d_p, self.n_per, self.nu_delta, bin_width),
                decode_windows(cu, d_l, self.n_per, self.nu_u, bin_width))

    def noise(self, window, magnitudes=None) -> ControllerNoise:
        """Linear theory of the decoding error at the fixed point, from counting statistics alone.

        A spike train decoded as a rate is the rate plus white noise of spectral density
        |x|/(n_per·ν) per unit.  Averaged over a long window T the noises ξ̄ = (ξ̄_δ, ξ̄_u) have
        covariance Σ = diag(E|δ|/(n_per ν_δ T), E|u|/(n_per ν_u T)); at zero frequency the state
        obeys 0 = −δ̄ + B(ū + ξ̄_u), 0 = −αū − δ_l + W(δ̄ + ξ̄_δ), and the decoded averages are
        (δ̄, ū) + ξ̄.  So the decoded error is G ξ̄ with G = I + A⁻¹J, A = [[I, −B], [−W, αI]],
        J = [[0, B], [W, 0]], and its covariance G Σ Gᵀ.  ``magnitudes`` (d_p + d_l) replaces |x*| in
        the noise densities (e.g. the peak |x| of a transient, for a bound on its fluctuations).  The
        node states' stationary covariance P solves the Lyapunov equation M P + P Mᵀ + Q = 0,
        M = −A/τ, Q = J·diag(E|x|/(n_per ν))·Jᵀ/τ² (E|x| ≥ |x*| because the state fluctuates
        through 0, where both populations fire).
        """
        import scipy.linalg
        from scipy.special import erf

        d_l, d_p = self.W.shape
        A = np.block([[np.eye(d_p), -self.B], [-self.W, self.alpha * np.eye(d_l)]])
        J = np.block([[np.zeros((d_p, d_p)), self.B], [self.W, np.zeros((d_l, d_l))]])
        x = np.linalg.solve(A, np.concatenate([np.zeros(d_p), -self.target_value]))
        nus = np.concatenate([np.full(d_p, float(self.nu_delta)), np.full(d_l, float(self.nu_u))])
        mags = np.abs(x) if magnitudes is None else np.asarray(magnitudes, dtype=np.float64)
        tau = float(self.tau)
        M = -A / tau
        G = np.eye(d_p + d_l) + np.linalg.solve(A, J)
        # The ON and OFF populations together fire at ν·|x(t)|, so the noise density is set by E|x|,
        # not |E x|: with the node state Gaussian around its mean (std from the Lyapunov solution),
        # E|x| = s·sqrt(2/π)·exp(−m²/2s²) + m·erf(m/(s√2)); iterate to the self-consistent value.
        ex = mags.copy()
        for _ in range(20):
            dens = ex / (self.n_per * nus)
            P = scipy.linalg.solve_continuous_lyapunov(M, -(J @ np.diag(dens) @ J.T) / tau ** 2)
            sd = np.sqrt(np.clip(np.diag(P), 1e-300, None))
            ex = sd * np.sqrt(2 / np.pi) * np.exp(-mags ** 2 / (2 * sd ** 2)) + mags * erf(mags / (sd * np.sqrt(2)))
        dens = ex / (self.n_per * nus)
        cov = G @ np.diag(dens / float(window)) @ G.T
        return ControllerNoise(x, np.sqrt(np.diag(cov)), np.sqrt(np.clip(np.diag(P), 0.0, None)))


__all__ = [
    "POP_EQS", "THRESHOLD", "RESET", "METHOD", "COUNT_ON_PRE", "COUNT_T_ON_PRE", "SHUT_ON_PRE", "SIGMA_T_SPIKING",
    "HEBB_EQS", "HEBB_ON_PRE", "HEBB_ON_POST", "CTRL_DELTA_NODE", "CTRL_U_NODE", "CTRL_FB_ON_PRE", "CTRL_FF_ON_PRE",
    "signed_population", "link_to_node", "windowed_node",
    "count_synapses", "window_counts", "decode_windows", "pair_kernel_integral", "SpikingOutputError",
    "SpikingShutdown", "SpikingHebbian", "SpikingController", "ControllerNoise",
]
