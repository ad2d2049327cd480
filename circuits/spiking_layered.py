"""A small spiking layered network that learns online with mirrored Hebbian synapses (Amit 2021,
§3.1, Remark 1, Fig. 15, App. 1), built from the pieces of :mod:`circuits.spiking`.

Sizes (d_0, d_1, d_2): one saturated-linear hidden layer and a linear output layer with the output
error circuit.  Every layer is an ON/OFF pair of Poisson integrate-and-fire populations; every
signal that crosses a layer is a spike count over a window.

Unit-pair synapse groups
------------------------
The weight W_{l,ji} and the feedback weight R_{l,ij} of one unit pair live together in one element
of a *pair group* (``P1``, ``P2``: a ``NeuronGroup`` of d_{l−1}·d_l elements, index i·d_l + j),
together with a presynaptic and a postsynaptic trace.  Spikes reach it through real ``Synapses``:

* from every neuron of presynaptic unit i (``on_pre``: pre trace += sgn; count += sgn/(N ν T);
  ``dw = A·sgn·(post trace)·plastic``; ``w += dw``; ``r += ε dw``),
* from every neuron of postsynaptic unit j (``on_pre`` of the second object: post trace += sgn;
  ``dw = A·sgn·(pre trace)·plastic``; ``w += dw``; ``r += ε dw``).

This is the all-to-all pair rule of :class:`circuits.spiking.SpikingHebbian` summed over the
4N² neuron pairs of the unit pair (the same arithmetic, pair by pair), kept at the unit level so
that W is one number that the forward pass uses whatever the sign of the presynaptic activity:
E[ΔW] = η·δ_l·x_{l−1}ᵀ per plasticity window (eq. 2), ΔR = ε·ΔWᵀ identically (URFB, ε = 1).
Forward and feedback transmission are summed variables of the pair group: h_j = Σ_i w_ij·x̂_i
(x̂_i the decoded count of the presynaptic window) and fb_i = Σ_j r_ij·δ̂_j.

Schedule (windows of length T per example, k = 0 … 5; Fig. 15 order, feedback from the updated R):

====  ===============================================================================
k     activity
====  ===============================================================================
0     layer 0 fires x_0 (eq. 1)
1     layer 1 fires x_1 = satlin(h_1), h_1 = W_1 x̂_0 (Remark 2)
2     output δ populations fire σ_δ(h_2 + 2M s) (App. 1, t_c = 0), h_2 = W_2 x̂_1
3     output t populations fire σ_t(δ̂) (App. 1)
4     layer 2 read populations fire e = δ̂·1[|t̂| < ½] (eq. 6); layer 1 fires x_1 again:
      plasticity of W_2, R_2 (pairs of x_1 and e spikes)
5     layer 1 fires δ_1 = R_2 ê·1[|h_1| < 1] (eq. 3, shut-down); layer 0 fires x_0 again:
      plasticity of W_1
====  ===============================================================================

The rate twin is :class:`circuits.amit.LayeredCircuit` (one output-circuit cycle reads eq. 6, see
:func:`plasticity.amit.read_output_signal`).
"""

from __future__ import annotations

import numpy as np

from plasticity.amit import OutputErrorParams, random_init, supervisory

from ._brian import check_target, codegen_target
from .amit import SIGMA_DELTA
from .spiking import METHOD, SIGMA_T_SPIKING, _defaults, link_to_node, pair_kernel_integral, signed_population

N_PHASES = 6

#: the window counter every node shares: k = phase within the example, ex = example index
_PHASE = "win += 1\nk = win % 6\nex = win // 6\n"

PAIR_EQS = """
w : 1                                           # W_{l,ji} of this unit pair
r : 1                                           # R_{l,ij} of this unit pair
dxtr/dt = -xtr/tau_tr : 1                       # presynaptic trace (sum over the unit's ON - OFF spikes)
dytr/dt = -ytr/tau_tr : 1                       # postsynaptic trace
xcnt : 1                                        # decoded presynaptic value of the forward window
ycnt : 1                                        # decoded postsynaptic value of the read window
plastic : 1 (shared)                            # 1 in this layer's plasticity window
win : integer (shared)
"""
#: at each window start: plasticity on in this layer's window, whose traces start from 0 (pairs
#: across the window edge, e.g. x_1 of window 4 with x_0 of window 5, would add an unsupervised
#: x·x term); counts reset at the start of the windows they decode
PAIR_LATCH = _PHASE + ("plastic = int(k == plastic_phase)\nxtr = xtr*int(k != plastic_phase)\n"
                       "ytr = ytr*int(k != plastic_phase)\nxcnt = xcnt*int(k != forward_phase)\n"
                       "ycnt = ycnt*int(k != read_phase)")
#: a spike of presynaptic unit i: its trace and count, and the pair term with the postsynaptic trace,
#: written into both weights (the mirrored increment, ε = 1 for URFB)
PAIR_ON_PRE = ("xtr_post += sgn_pre\nxcnt_post += sgn_pre*wdec\n"
               "dw = A*sgn_pre*ytr_post*plastic_post\nw_post += dw\nr_post += epsilon*dw")
#: a spike of postsynaptic unit j: the same with the presynaptic trace
PAIR_ON_POST = ("ytr_post += sgn_pre\nycnt_post += sgn_pre*wdec\n"
                "dw = A*sgn_pre*xtr_post*plastic_post\nw_post += dw\nr_post += epsilon*dw")

NODE_BASE = """
value : 1
gate : 1 (constant)
win : integer (shared)
"""
#: layer 0: the presented input, on in windows 0 and 5
L0_LATCH = _PHASE + "value = x_in((ex - ex0)*tex, i)*int(k == 0 or k == 5)"
#: layer 1: h_1 from the forward sum, x_1 = satlin(h_1) in windows 1 and 4, gated feedback in 5
L1_EQS = NODE_BASE + "h : 1\nhsum : 1\nfbsum : 1\n"
L1_LATCH = _PHASE + ("h = hsum*int(k == 1) + h*int(k != 1)\n"
                     "value = clip(h, -1, 1)*int(k == 1 or k == 4) + fbsum*int(abs(h) < 1)*int(k == 5)")
#: output δ_c: H = h + 2M s (t_c = 0 in the one cycle), fires in window 2
OUT_EQS = NODE_BASE + "h : 1\nhsum : 1\ns : 1\nh_peak : 1\nex0 : integer (shared)\n"
OUT_LATCH = _PHASE + ("h = hsum*int(k == 2) + h*int(k != 2)\ns = s_in((ex - ex0)*tex, i)\n"
                      "h_peak = clip(abs(h), h_peak, inf)\n"
                      "value = " + SIGMA_DELTA.format(H="(h + 2*M*s)") + "*int(k == 2)")
#: output t_c: σ_t of the decoded δ̂, fires in window 3
T_EQS = NODE_BASE + "acc : 1\ndhat : 1\n"
T_LATCH = _PHASE + ("dhat = acc*int(k == 3) + dhat*int(k != 3)\nacc = 0\n"
                    "value = " + SIGMA_T_SPIKING.format(x="dhat") + "*int(k == 3)")
#: layer-2 read unit: e = δ̂·1[|t̂| < ½] (eq. 6 from spike counts), fires in window 4
READ_EQS = NODE_BASE + "acc_d : 1\nacc_t : 1\ndkeep : 1\ntkeep : 1\n"
READ_LATCH = _PHASE + ("dkeep = acc_d*int(k == 3) + dkeep*int(k != 3)\ntkeep = acc_t*int(k == 4) + tkeep*int(k != 4)\n"
                       "acc_d = 0\nacc_t = 0\nvalue = dkeep*int(abs(tkeep) < 0.5)*int(k == 4)")


class SpikingLayered:
    """Spiking (d_0, d_1, d_2) network learning online with URFB (see the module docstring).

    ``W0s``, ``R0s`` as in :class:`circuits.amit.LayeredCircuit` (drawn from ``seed`` when None);
    ``eta`` is the expected ΔW = η δ xᵀ per example; ``nu`` (input/hidden) and ``nu_out`` (output
    circuit) in Hz per unit of value; ``window`` per phase.  ``train(X, labels)`` learns online.
    """

    def __init__(self, sizes, W0s=None, R0s=None, eta: float = 0.01, epsilon: float = 1.0, mu: float = 1.0, *,
                 seed: int = 0, n_per: int = 10, nu=None, nu_out=None, window=None, tau_trace=None, dt=None,
                 eps_delta: float = 1.0, M: float = 1024.0, chunk: int = 200, name: str = "spk_layered",
                 target: str = "numpy"):
        import brian2 as b2

        self.sizes = tuple(int(s) for s in sizes)
        if len(self.sizes) != 3:
            raise ValueError(f"sizes must be (d_0, d_1, d_2), got {sizes}")
        d0, d1, d2 = self.sizes
        self.target = check_target(target)
        self.seed, self.n_per, self.chunk = int(seed), int(n_per), int(chunk)
        rng = np.random.default_rng(self.seed)
        if W0s is None or R0s is None:
            W0s, R0s, _, _ = random_init(self.sizes, np.random.default_rng(self.seed + 1))
        self.W0s = [np.asarray(W, dtype=np.float64) for W in W0s]
        self.R0s = [np.asarray(R, dtype=np.float64) for R in R0s]
        self.eta, self.epsilon = float(eta), float(epsilon)
        self.params = OutputErrorParams(M=M, S=1.0, mu=mu, epsilon=eps_delta)
        self.nu = 200.0 * b2.Hz if nu is None else nu
        self.nu_out = 400.0 * b2.Hz if nu_out is None else nu_out
        self.window = 25.0 * b2.ms if window is None else window
        self.tau_trace = 10.0 * b2.ms if tau_trace is None else tau_trace
        self.dt, tau_ref, vth = _defaults(0.5 * b2.ms if dt is None else dt, None, None)
        T, tau = float(self.window), float(self.tau_trace)
        pairs = pair_kernel_integral(self.tau_trace, self.dt) * T - 2 * tau ** 2 * (1 - np.exp(-T / tau))
        self.tex = 1.0 * b2.ms
        self._x_in = b2.TimedArray(np.zeros((self.chunk, d0)), dt=self.tex, name=f"{name}_x_in")
        self._s_in = b2.TimedArray(np.zeros((self.chunk, d2)), dt=self.tex, name=f"{name}_s_in")
        common = {"tex": self.tex, "x_in": self._x_in, "s_in": self._s_in}
        objs = []

        def node(n, eqs, latch, nm, extra=None):
            G = b2.NeuronGroup(n, eqs, method=METHOD, dt=self.dt, name=f"{name}_{nm}_in",
                               namespace=dict(common, **(extra or {})))
            G.win = -1
            G.gate = 1.0
            G.run_regularly(latch, dt=self.window, when="start", order=0, name=f"{name}_{nm}_latch")
            objs.append(G)
            return G

        def pop(n, nm, nu, nd):
            P = signed_population(n, self.n_per, nu=nu, name=f"{name}_{nm}", dt=self.dt, rng=rng, tau_ref=tau_ref,
                                  vth=vth)
            link_to_node(P, nd)
            objs.append(P)
            return P

        def count(src, dst, var, nu, nm):
            S = b2.Synapses(src, dst, on_pre=f"{var}_post += sgn_pre*wdec", dt=self.dt, name=f"{name}_{nm}",
                            namespace={"wdec": 1.0 / (self.n_per * float(nu * self.window))})
            S.connect(i=np.arange(src.N), j=np.asarray(src.unit[:]))
            objs.append(S)
            return S

        self.l0 = node(d0, NODE_BASE + "ex0 : integer (shared)\n", L0_LATCH, "l0")
        self.l1 = node(d1, L1_EQS, L1_LATCH, "l1")
        self.out = node(d2, OUT_EQS, OUT_LATCH, "out", self.params.namespace())
        self.tnode = node(d2, T_EQS, T_LATCH, "t", self.params.namespace())
        self.read = node(d2, READ_EQS, READ_LATCH, "read")
        self.pop0 = pop(d0, "l0", self.nu, self.l0)
        self.pop1 = pop(d1, "l1", self.nu, self.l1)
        self.popd = pop(d2, "delta", self.nu_out, self.out)
        self.popt = pop(d2, "tc", self.nu_out, self.tnode)
        self.popr = pop(d2, "l2", self.nu_out, self.read)
        count(self.popd, self.tnode, "acc", self.nu_out, "delta_to_t")
        count(self.popd, self.read, "acc_d", self.nu_out, "delta_to_read")
        count(self.popt, self.read, "acc_t", self.nu_out, "t_to_read")

        self.pairs = []
        layers = [(self.pop0, self.pop1, self.l1, d0, d1, self.nu, self.nu, 5, 0, -1),
                  (self.pop1, self.popr, self.out, d1, d2, self.nu, self.nu_out, 4, 1, 4)]
        for l, (pre, post, down, dp, dq, nu_pre, nu_post, plastic_phase, fwd, read_phase) in enumerate(layers, 1):
            A = self.eta / (self.n_per ** 2 * float(nu_pre) * float(nu_post) * pairs)
            P = b2.NeuronGroup(dp * dq, PAIR_EQS, method="exact", dt=self.dt, name=f"{name}_P{l}",
                               namespace={"tau_tr": self.tau_trace, "plastic_phase": plastic_phase,
                                          "forward_phase": fwd, "read_phase": read_phase})
            P.win = -1
            P.run_regularly(PAIR_LATCH, dt=self.window, when="start", order=0, name=f"{name}_P{l}_latch")
            P.w = self.W0s[l - 1].T.ravel()  # element i*dq + j holds W_{ji}
            P.r = self.R0s[l - 1].ravel()  # and R_{ij}
            ns = {"A": A, "epsilon": self.epsilon}
            Spre = b2.Synapses(pre, P, on_pre=PAIR_ON_PRE, dt=self.dt, name=f"{name}_P{l}_from_pre",
                               namespace=dict(ns, wdec=1.0 / (self.n_per * float(nu_pre * self.window))))
            ii, jj = np.meshgrid(np.arange(pre.N), np.arange(dq), indexing="ij")
            Spre.connect(i=ii.ravel(), j=(np.asarray(pre.unit[:])[ii] * dq + jj).ravel())
            Spost = b2.Synapses(post, P, on_pre=PAIR_ON_POST, dt=self.dt, name=f"{name}_P{l}_from_post",
                                namespace=dict(ns, wdec=1.0 / (self.n_per * float(nu_post * self.window))))
            ii, jj = np.meshgrid(np.arange(post.N), np.arange(dp), indexing="ij")
            Spost.connect(i=ii.ravel(), j=(jj * dq + np.asarray(post.unit[:])[ii]).ravel())
            # forward: h_j = Σ_i w_ij x̂_i, summed at the start of every step (before the latches)
            Sfwd = b2.Synapses(P, down, "hsum_post = w_pre*xcnt_pre : 1 (summed)", dt=self.dt,
                               name=f"{name}_P{l}_forward")
            Sfwd.connect(i=np.arange(dp * dq), j=np.arange(dp * dq) % dq)
            Sfwd.summed_updaters["hsum_post"].when = "start"
            Sfwd.summed_updaters["hsum_post"].order = -1
            objs += [P, Spre, Spost, Sfwd]
            if l == 2:  # feedback onto layer 1: fb_i = Σ_j r_ij ê_j
                Sfb = b2.Synapses(P, self.l1, "fbsum_post = r_pre*ycnt_pre : 1 (summed)", dt=self.dt,
                                  name=f"{name}_P{l}_feedback")
                Sfb.connect(i=np.arange(dp * dq), j=np.arange(dp * dq) // dq)
                Sfb.summed_updaters["fbsum_post"].when = "start"
                Sfb.summed_updaters["fbsum_post"].order = -1
                objs.append(Sfb)
            self.pairs.append(P)
        self.h_monitor = b2.StateMonitor(self.out, "h", record=True, dt=self.window, when="end", name=f"{name}_hmon")
        objs.append(self.h_monitor)
        self.network = b2.Network(*objs, name=f"{name}_net")
        self.examples_seen = 0

    def weights(self):
        """``([W_1, W_2], [R_1, R_2])`` as float64 arrays (torch layout)."""
        Ws, Rs = [], []
        for P, (dp, dq) in zip(self.pairs, ((self.sizes[0], self.sizes[1]), (self.sizes[1], self.sizes[2]))):
            Ws.append(np.asarray(P.w[:]).reshape(dp, dq).T.copy())
            Rs.append(np.asarray(P.r[:]).reshape(dp, dq).copy())
        return Ws, Rs

    def train(self, X, labels) -> np.ndarray:
        """Learn online; returns the output h_2 the circuit computed for every example (n, d_2)."""
        import brian2 as b2

        X = np.asarray(X, dtype=np.float64)
        S = supervisory(np.asarray(labels), self.sizes[2])
        outs = []
        if self.examples_seen == 0:
            b2.seed(self.seed)
        for start in range(0, len(X), self.chunk):
            k = min(self.chunk, len(X) - start)
            # the inputs of this chunk, indexed by example − ex0 (fixed capacity, written in place)
            self._x_in.values[:k] = X[start:start + k]
            self._s_in.values[:k] = S[start:start + k]
            self.l0.ex0 = self.examples_seen
            self.out.ex0 = self.examples_seen
            n0 = len(self.h_monitor.t)
            with codegen_target(self.target):
                self.network.run(k * N_PHASES * self.window, namespace={})
            h = np.asarray(self.h_monitor.h[:, n0:]).T  # (k·6, d_2), sampled at the end of each window's first step
            outs.append(h[2::N_PHASES])
            self.examples_seen += k
        if float(np.max(self.out.h_peak[:])) >= self.params.M:
            raise ValueError(f"|h_2| reached {float(np.max(self.out.h_peak[:])):g} ≥ M = {self.params.M:g}")
        return np.concatenate(outs)


__all__ = ["SpikingLayered", "PAIR_EQS", "PAIR_ON_PRE", "PAIR_ON_POST", "N_PHASES"]
