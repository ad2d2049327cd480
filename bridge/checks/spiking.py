"""Cross-checks and demos of the spiking circuits (:mod:`circuits.spiking`) against their rate twins.

Every check compares a spike-decoded quantity with the value its rate twin computes on the same
inputs.  The tolerances are *derived*, not tuned: a population of N neurons per polarity, firing
at ν per unit of the coded value x over a window T, gives a decoded x̂ whose counting error has
standard deviation ``σ = sqrt(|x| / (N·ν·T))`` (Poisson; the refractory period makes the counts
less variable, so σ is an upper bound).  A row compares m entries at once; with a family-wise
false-alarm probability ``P_FALSE = 1e-3`` and Bonferroni, each entry may deviate by
``k = Φ⁻¹(1 − P_FALSE/(2m))`` standard deviations (:func:`k_sigma`), so a row's tolerance is
``k·sqrt(max|x|/(N·ν·T))`` (the largest σ among its entries).  Entries whose twin value is 0 have no
spikes at all and must decode to exactly 0.  Seeds are fixed (``brian2.seed`` in the circuit's first
run, ``numpy.random.default_rng`` for the initial thresholds and the inputs).

Checks (``credit crossval``):

* ``spiking-output-error`` — Amit App. 1 (Fig. 13–14): δ̂ of every δ window against σ_δ of the
  numpy twin (:func:`plasticity.amit.output_error_twin`), t̂ of every t window against σ_t, and the
  learning signal read from spike counts against eq. 6 (``Hinge(μ).teaching``).
* ``spiking-feedback-gate`` — eq. 3: the control pair c = u + v against 1[x ≥ 1] − 1[x ≤ −1], the
  gated pair against ``satlin.gate(a)·δ``.
* ``spiking-hebbian`` — §3.1, eq. 2: ΔW of the mirrored spike-based synapses against η·δ·xᵀ with
  the shot-noise σ of the pair count (:meth:`circuits.spiking.SpikingHebbian.expected_std`), and
  ΔR = ε·ΔWᵀ exactly (tolerance 0: the same increment is written into both weights).
* ``spiking-controller`` — Podlaski & Machens eq. 5, 8: decoded δ̂ and û averaged over a window at
  steady state against the rate circuit's fixed point (:func:`circuits.controller.build_controller`
  run to convergence; NDI eq. 10 in the detail), σ from the linear theory of
  :meth:`circuits.spiking.SpikingController.noise`; and the transient, bin by bin, against the rate
  trajectory (σ² = stationary node variance + counting variance of the bin).
* ``spiking-convergence`` — the ON/OFF code every circuit shares: the normalised RMS error against
  N·T over a 64× range, fitted log-log slope −0.5 ± 0.1.

Demos (``credit circuit``): ``spiking-output-error``, ``spiking-controller``, ``spiking-hebbian``
(rasters and decoded-vs-rate plots) and ``spiking-layered`` (test error of the spiking 64-30-10
network learning digits online beside the rate circuit's, :func:`layered_digits`; not a crossval
row: the two learn through different noise, so their difference has no counting-statistics bound).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import plasticity as P
from plasticity import amit as PA

from ..app.registry import CheckResult, register_check, register_demo

#: family-wise probability that a correct circuit fails a row by chance (Bonferroni over its entries)
P_FALSE = 1e-3


def k_sigma(m: int, p: float = P_FALSE) -> float:
    """Two-sided Gaussian quantile with Bonferroni over m entries: P(max |z| > k) ≤ p."""
    from scipy.special import erfcinv

    return float(math.sqrt(2.0) * erfcinv(p / max(int(m), 1)))


def _quiet():
    from circuits._brian import quiet_brian

    quiet_brian()


def _stat_row(name, est, want, sigma, detail) -> CheckResult:
    """One statistical row: max |est − want| against k·max σ; zero-valued entries must be exactly 0."""
    est, want, sigma = (np.asarray(v, dtype=np.float64).ravel() for v in (est, want, sigma))
    err = np.abs(est - want)
    zero = sigma == 0
    k = k_sigma(int((~zero).sum()))
    tol = k * float(sigma.max())
    diff = float(err.max())
    if np.any(err[zero] > 0):  # a unit that should be silent fired: fail outright
        diff = max(diff, float("inf"))
    z = float(np.max(err[~zero] / sigma[~zero])) if np.any(~zero) else 0.0
    return CheckResult(name, diff, tol, f"{detail}; {int((~zero).sum())} noisy + {int(zero.sum())} silent entries, "
                                        f"k = {k:.2f} (P_false = {P_FALSE:g}), max |z| = {z:.2f}")


# =============================================================================================
# spiking-output-error
# =============================================================================================

#: parameters of the spiking output check: M = 8 keeps M − |h| ≥ 5.5 ≫ 2M·σ(t̂) = 0.8; ε = 1 keeps the
#: σ_t margin ε/2 = 0.5 ≥ 7σ(δ̂); μ = 0.5 separates −μ from 1 and from −μ − ε.
OUT_PARAMS = dict(M=8.0, S=1.0, mu=0.5, epsilon=1.0)
OUT_SIZE = dict(n=4, C=10, n_per=20, cycles=2, nu=100.0, nu_t=200.0, window_ms=100.0)


def output_error_rows(seed: int = 0, n_per: int | None = None) -> list[CheckResult]:
    """Spiking output error circuit against the numpy twin and eq. 6 (rows of ``spiking-output-error``)."""
    import brian2 as b2

    from circuits.spiking import SpikingOutputError

    _quiet()
    cfg = dict(OUT_SIZE, **({} if n_per is None else {"n_per": n_per}))
    p = PA.OutputErrorParams(**OUT_PARAMS)
    rng = np.random.default_rng(seed)
    h = rng.uniform(-2.5, 2.5, size=(cfg["n"], cfg["C"]))
    labels = rng.integers(0, cfg["C"], size=cfg["n"])
    h[np.arange(cfg["n"]), labels] = rng.uniform(-0.5, 2.5, size=cfg["n"])  # presented classes on both sides of S
    c = SpikingOutputError(h, labels, p, n_cycles=cfg["cycles"], n_per=cfg["n_per"], nu=cfg["nu"] * b2.Hz,
                           nu_t=cfg["nu_t"] * b2.Hz, window=cfg["window_ms"] * b2.ms, seed=seed).run()
    tw = PA.output_error_twin(h, labels, p, n_cycles=cfg["cycles"])
    NT = cfg["n_per"] * cfg["window_ms"] * 1e-3
    d_hat, t_hat = c.decoded("delta")[0::2], c.decoded("t")[1::2]
    d_want, t_want = tw.delta[0::2], tw.tc[1::2]
    reads = c.reads()
    e_want = P.Hinge(p.mu).teaching(h, labels)
    regimes = {"1": int(np.sum(e_want == 1)), "-μ": int(np.sum(e_want == -p.mu)),
               "oscillating": int(np.sum(e_want == 0))}
    what = (f"{cfg['n']}×{cfg['C']} units, N={cfg['n_per']}/polarity, T={cfg['window_ms']:g} ms, "
            f"ν={cfg['nu']:g} Hz (t: {cfg['nu_t']:g} Hz), M={p.M:g}, μ={p.mu:g}, ε={p.epsilon:g}")
    return [
        _stat_row("spiking-output-error[δ windows vs σ_δ twin]", d_hat, d_want,
                  np.sqrt(np.abs(d_want) / (NT * cfg["nu"])), f"{what}; σ = sqrt(|δ|/(N ν T))"),
        _stat_row("spiking-output-error[t windows vs σ_t twin]", t_hat, t_want,
                  np.sqrt(np.abs(t_want) / (NT * cfg["nu_t"])), "σ = sqrt(|t|/(N ν_t T))"),
        _stat_row("spiking-output-error[read from spike counts vs eq. 6]", reads, np.broadcast_to(e_want, reads.shape),
                  np.broadcast_to(np.sqrt(np.abs(e_want) / (NT * cfg["nu"])), reads.shape),
                  f"every cycle; regimes (units): {regimes}"),
    ]


@register_check("spiking-output-error")
def check_output_error(opts) -> list[CheckResult]:
    """δ̂ and t̂ window by window, and the spike-count read, against the numpy twin and eq. 6."""
    return output_error_rows(opts.seed)


# =============================================================================================
# spiking-feedback-gate
# =============================================================================================

GATE_SIZE = dict(units=60, n_per=20, nu=100.0, window_ms=100.0, K=4.0)


def feedback_gate_rows(seed: int = 0) -> list[CheckResult]:
    import brian2 as b2

    from circuits.spiking import SpikingShutdown

    _quiet()
    g = GATE_SIZE
    rng = np.random.default_rng(seed)
    K = g["K"]
    delta = rng.uniform(-K / 2, K / 2, size=g["units"])  # |δ| ≤ K/2: z = δ − 2K(û − v̂) ≤ −K while |û − v̂ − 1| < 1/4
    a = rng.uniform(-2.0, 2.0, size=g["units"])
    a[:4] = [1.0, -1.0, 0.999, -0.999]  # the thresholds: a = ±1 exactly shut the gate
    c = SpikingShutdown(delta, a, K, n_per=g["n_per"], nu=g["nu"] * b2.Hz, window=g["window_ms"] * b2.ms,
                        seed=seed).run()
    c_hat, gated = c.decoded()
    c_want = (a >= 1).astype(float) - (a <= -1).astype(float)
    g_want = P.get_transfer("satlin").gate(a) * delta
    NT = g["n_per"] * g["window_ms"] * 1e-3
    what = f"{g['units']} units, N={g['n_per']}, T={g['window_ms']:g} ms, ν={g['nu']:g} Hz, K={K:g}"
    return [
        _stat_row("spiking-feedback-gate[control u + v]", c_hat, c_want, np.sqrt(np.abs(c_want) / (NT * g["nu"])),
                  f"{what}; u = 1[x ≥ 1], v = −1[x ≤ −1]"),
        _stat_row("spiking-feedback-gate[gated δ vs eq. 3]", gated, g_want, np.sqrt(np.abs(g_want) / (NT * g["nu"])),
                  f"closed gates {int(np.sum(np.abs(a) >= 1))} (a = ±1 exactly included)"),
    ]


@register_check("spiking-feedback-gate")
def check_feedback_gate(opts) -> list[CheckResult]:
    """Spiking shut-down circuit against eq. 3."""
    return feedback_gate_rows(opts.seed)


# =============================================================================================
# spiking-hebbian
# =============================================================================================

HEBB_SIZE = dict(d_pre=4, d_post=3, n_per=20, nu=200.0, window_s=1.0, dt_ms=0.5, eta=0.1, epsilon=1.0)


def hebbian_rows(seed: int = 0) -> list[CheckResult]:
    import brian2 as b2

    from circuits.spiking import SpikingHebbian

    _quiet()
    s = HEBB_SIZE
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], s["d_pre"]) * rng.uniform(0.3, 1.0, s["d_pre"])
    d = rng.choice([-1.0, 1.0], s["d_post"]) * rng.uniform(0.3, 1.0, s["d_post"])
    W0 = rng.normal(0, 0.3, (s["d_post"], s["d_pre"]))
    c = SpikingHebbian(x, d, W0, W0.T.copy(), eta=s["eta"], epsilon=s["epsilon"], n_per=s["n_per"],
                       nu=s["nu"] * b2.Hz, window=s["window_s"] * b2.second, dt=s["dt_ms"] * b2.ms, seed=seed).run()
    W, R = c.weights()
    dW, dR = W - W0, R - W0.T
    want = s["eta"] * np.outer(d, x)  # the rate rule Δw = η·post·pre (eq. 2)
    what = (f"{s['d_pre']}→{s['d_post']} units, N={s['n_per']}, T={s['window_s']:g} s, ν={s['nu']:g} Hz, "
            f"η={s['eta']:g}, τ_trace={float(c.tau) * 1e3:g} ms")
    exact = float(np.max(np.abs(dR - s["epsilon"] * dW.T)) / np.max(np.abs(dW)))
    return [
        _stat_row("spiking-hebbian[ΔW vs η δ xᵀ]", dW, want, c.expected_std(),
                  f"{what}; σ from the shot noise of the pair count; mean |ΔW|/|η δ xᵀ| = "
                  f"{float(np.sum(dW * want) / np.sum(want * want)):.3f}"),
        CheckResult("spiking-hebbian[ΔR = ε ΔWᵀ, same increments]", exact, 0.0,
                    f"ε={s['epsilon']:g}; both weights change in the same on_pre/on_post statements; R₀ = W₀ᵀ "
                    f"stays aligned: max|R − Wᵀ| = {float(np.max(np.abs(R - W.T))):.1e}"),
    ]


@register_check("spiking-hebbian")
def check_hebbian(opts) -> list[CheckResult]:
    """Mirrored spike-based synapses: E[ΔW] = η δ xᵀ, ΔR = ε ΔWᵀ."""
    return hebbian_rows(opts.seed)


# =============================================================================================
# spiking-controller
# =============================================================================================

CTRL_SIZE = dict(d_l=3, d_p=5, alpha=0.2, n_per=50, nu_delta=200.0, nu_u=100.0, tau_ms=10.0, settle_s=0.3,
                 average_s=1.0, bin_ms=25.0, track_s=0.2, dt_ms=0.5)


def _ctrl_setup(seed):
    rng = np.random.default_rng(seed)
    W = rng.uniform(-0.5, 0.5, (CTRL_SIZE["d_l"], CTRL_SIZE["d_p"]))
    return W, -W.T.copy(), rng.normal(size=CTRL_SIZE["d_l"])


def run_controller_pair(seed: int = 0, n_per: int | None = None, **over):
    """The spiking controller and its rate twin on the same W, B, target; returns both and the rate trajectory."""
    import brian2 as b2

    from circuits.controller import TAU, build_controller
    from circuits.spiking import SpikingController

    _quiet()
    s = dict(CTRL_SIZE, **over)
    W, B, t = _ctrl_setup(seed)
    dt, tau = s["dt_ms"] * b2.ms, s["tau_ms"] * b2.ms
    sc = SpikingController(W, B, t, s["alpha"], n_per=s["n_per"] if n_per is None else n_per,
                           nu_delta=s["nu_delta"] * b2.Hz, nu_u=s["nu_u"] * b2.Hz, tau=tau, dt=dt, seed=seed)
    total = (s["settle_s"] + s["average_s"]) * b2.second
    sc.run(total)
    steps = int(round(float(total / dt)))
    # the rate twin in the paper's step units (its own τ is TAU): the same dt/τ
    rate = build_controller(W, B, t[None], "linear", s["alpha"], float(dt / tau) * TAU).run(steps)
    return sc, rate, s


def controller_rows(seed: int = 0) -> list[CheckResult]:
    import brian2 as b2

    from plasticity import NDI

    sc, rate, s = run_controller_pair(seed)
    W, B, t = _ctrl_setup(seed)
    T = s["average_s"] * b2.second
    d_hat, u_hat = sc.decoded(T, start=s["settle_s"] * b2.second)
    fixed_d, fixed_u = rate.state("delta0")[0], rate.state("u1")[0]
    ndi = (t[None] @ NDI(alpha=s["alpha"]).operator(W, B).T)[0]
    noise = sc.noise(T)
    d_p = W.shape[1]
    what = (f"{W.shape[1]}+{W.shape[0]} units, N={sc.n_per}, ν_δ={s['nu_delta']:g} Hz, ν_u={s['nu_u']:g} Hz, "
            f"τ={s['tau_ms']:g} ms, α={s['alpha']:g}, window {s['average_s']:g} s after {s['settle_s']:g} s")
    rows = [
        _stat_row("spiking-controller[δ̂ settled vs rate fixed point]", d_hat[0], fixed_d, noise.window_std[:d_p],
                  f"{what}; σ from linear counting theory; rate fixed point − NDI eq. 10: "
                  f"{float(np.max(np.abs(fixed_d - ndi))):.1e}"),
        _stat_row("spiking-controller[û settled vs rate fixed point]", u_hat[0], fixed_u, noise.window_std[d_p:],
                  "the controller units u (eq. 8)"),
    ]
    # the transient, bin by bin: decoded bins against the bin-averaged rate trajectory
    bw = s["bin_ms"] * b2.ms
    nb = int(round(s["track_s"] / (s["bin_ms"] * 1e-3)))
    db, ub = sc.decoded(bw)
    per = int(round(float(bw / sc.dt)))
    traj = np.concatenate([rate.trajectory("delta0")[:, 0, :], rate.trajectory("u1")[:, 0, :]], axis=1)
    want = traj[: nb * per].reshape(nb, per, -1).mean(1)
    est = np.concatenate([db[:nb], ub[:nb]], axis=1)
    nus = np.concatenate([np.full(d_p, s["nu_delta"]), np.full(W.shape[0], s["nu_u"])])
    peak = np.max(np.abs(traj), axis=0)
    # node-state fluctuation bound: the stationary std at the largest rates the trajectory reaches
    lat = sc.noise(T, magnitudes=peak).latent_std
    sigma = np.sqrt(lat ** 2 + peak / (sc.n_per * nus * float(bw)))
    rows.append(_stat_row("spiking-controller[transient bins vs rate trajectory]", est, want,
                          np.broadcast_to(sigma, est.shape),
                          f"first {s['track_s']:g} s in {s['bin_ms']:g} ms bins; σ² = node variance (Lyapunov, at the "
                          f"peak rates) + counting variance of a bin"))
    return rows


@register_check("spiking-controller")
def check_controller(opts) -> list[CheckResult]:
    """Spiking DI controller: settled δ̂, û against the rate fixed point; the transient against the rate trajectory."""
    return controller_rows(opts.seed)


# =============================================================================================
# spiking-convergence
# =============================================================================================

#: (N per polarity, window in ms): N·T spans 64×
CONV_GRID = ((4, 50.0), (8, 100.0), (16, 200.0), (32, 400.0))
CONV_UNITS = 100
CONV_NU = 100.0
#: slope of log(error) against log(N·T) and its allowed deviation
CONV_SLOPE, CONV_TOL = -0.5, 0.1


def convergence_errors(seed: int = 0, grid=CONV_GRID, units: int = CONV_UNITS):
    """Normalised RMS decoding error of the ON/OFF code for each (N, T): RMS of (x̂ − x)/sqrt(|x|/ν)."""
    import brian2 as b2

    from circuits._brian import codegen_target
    from circuits.spiking import decode_windows, link_to_node, signed_population, window_counts

    _quiet()
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], units) * rng.uniform(0.2, 1.5, units)
    nu, dt = CONV_NU * b2.Hz, 0.5 * b2.ms
    out = []
    b2.seed(seed)
    for k, (n_per, T_ms) in enumerate(grid):
        T = T_ms * b2.ms
        node = b2.NeuronGroup(units, "value : 1 (constant)\ngate : 1 (constant)", method="euler", dt=dt,
                              name=f"spk_conv{k}_in")
        node.value, node.gate = x, 1.0
        pop = signed_population(units, n_per, nu=nu, name=f"spk_conv{k}", dt=dt, rng=rng)
        link_to_node(pop, node)
        mon = b2.SpikeMonitor(pop, name=f"spk_conv{k}_spikes")
        with codegen_target("numpy"):
            b2.Network(node, pop, mon, name=f"spk_conv{k}_net").run(T, namespace={})
        xh = decode_windows(window_counts(mon, pop.N, T, 1, dt)[0], units, n_per, nu, T)
        out.append(float(np.sqrt(np.mean((xh - x) ** 2 / (np.abs(x) / CONV_NU)))))
    nt = np.array([n * t * 1e-3 for n, t in grid])
    return nt, np.array(out)


@register_check("spiking-convergence")
def check_convergence(opts) -> list[CheckResult]:
    """Decoding error against N·T: fitted log-log slope −0.5 ± 0.1 (counting statistics)."""
    nt, err = convergence_errors(opts.seed)
    slope, icpt = np.polyfit(np.log(nt), np.log(err), 1)
    pts = ", ".join(f"N·T={a:g} s: {e:.3f}" for a, e in zip(nt, err))
    return [CheckResult("spiking-convergence[error ∝ (N·T)^slope]", abs(float(slope) - CONV_SLOPE), CONV_TOL,
                        f"slope {slope:.3f} (want {CONV_SLOPE} ± {CONV_TOL}), prefactor {math.exp(icpt):.3f} "
                        f"(Poisson: 1, refractoriness lowers it); {CONV_UNITS} units, ν={CONV_NU:g} Hz; "
                        f"normalised RMS errors: {pts}")]


# =============================================================================================
# demos
# =============================================================================================


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _raster(ax, mon, n_units, n_per, units, t_max_s, title):
    units = list(units)
    t = np.asarray(mon.t[:]) * 1.0
    i = np.asarray(mon.i[:])
    for row, u in enumerate(units):
        for pol, colour in ((0, "C3"), (1, "C0")):
            lo = (u * 2 + pol) * n_per
            sel = (i >= lo) & (i < lo + n_per)
            y = row * 2 * n_per + pol * n_per + (i[sel] - lo)
            ax.plot(t[sel], y, "|", ms=2, color=colour)
    ax.set(xlim=(0, t_max_s), ylim=(-1, 2 * n_per * len(units)), xlabel="time (s)", ylabel="neuron (ON red / OFF blue)")
    ax.set_title(title, fontsize=9)


@register_demo("spiking-output-error")
def demo_output_error(out: Path, seed: int = 0) -> list[Path]:
    """Rasters of δ and t populations in the four regimes; decoded δ, t per window against the rate twin."""
    import brian2 as b2

    from circuits.spiking import SpikingOutputError

    _quiet()
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = PA.OutputErrorParams(**OUT_PARAMS)
    h = np.array([[0.5, -2.0], [-0.5, 2.0]])
    labels = np.array([0, 1])
    cycles = 4
    c = SpikingOutputError(h, labels, p, n_cycles=cycles, n_per=20, nu=100 * b2.Hz, nu_t=200 * b2.Hz,
                           window=100 * b2.ms, seed=seed).run()
    tw = PA.output_error_twin(h, labels, p, n_cycles=cycles)
    cases = [(0, 0, "class, h=0.5: constant 1"), (1, 1, "class, h=2: 1+ε ↔ 0"),
             (1, 0, "not class, h=−0.5: constant −μ"), (0, 1, "not class, h=−2: −μ−ε ↔ 0")]
    T = c.windows_run * float(c.window)
    fig, axes = plt.subplots(3, 4, figsize=(15, 9))
    d_hat, t_hat = c.decoded("delta"), c.decoded("t")
    k = np.arange(2 * cycles)
    for col, (n, cl, title) in enumerate(cases):
        u = n * h.shape[1] + cl
        _raster(axes[0, col], c.monitors["delta"], c.n_units, c.n_per, [u], T, f"δ populations: {title}")
        _raster(axes[1, col], c.monitors["t"], c.n_units, c.n_per, [u], T, "t populations")
        axes[2, col].step(k, tw.delta[:, n, cl], where="post", color="k", label="rate twin δ")
        axes[2, col].plot(k[0::2] + 0.5, d_hat[0::2, n, cl], "o", color="C3", label="δ̂ (δ windows)")
        axes[2, col].step(k, tw.tc[:, n, cl], where="post", color="gray", ls=":", label="rate twin t")
        axes[2, col].plot(k[1::2] + 0.5, t_hat[1::2, n, cl], "s", color="C0", label="t̂ (t windows)")
        axes[2, col].set(xlabel="window (even: δ, odd: t)", ylim=(-2, 2.2))
        axes[2, col].grid(alpha=0.3)
    axes[2, 0].legend(fontsize=7)
    fig.suptitle(f"Spiking output error circuit (Amit App. 1), M={p.M:g}, μ={p.mu:g}, ε={p.epsilon:g}; "
                 f"N={c.n_per}/polarity, window {float(c.window) * 1e3:g} ms;\n"
                 f"read e = {c.signal().ravel().round(2).tolist()} (eq. 6: "
                 f"{P.Hinge(p.mu).teaching(h, labels).ravel().tolist()})")
    fig.tight_layout()
    path = out / "spiking_output_error.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


@register_demo("spiking-controller")
def demo_controller(out: Path, seed: int = 0) -> list[Path]:
    """Decoded δ̂, û (20 ms bins) against the rate controller's trajectory, and rasters."""
    import brian2 as b2

    _quiet()
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sc, rate, s = run_controller_pair(seed, settle_s=0.3, average_s=0.3)
    bw = 20 * b2.ms
    db, ub = sc.decoded(bw)
    tb = (np.arange(len(db)) + 0.5) * float(bw)
    tr = np.arange(rate.steps_run) * float(sc.dt)
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    for col, (est, traj, nm) in enumerate(((db, rate.trajectory("delta0")[:, 0, :], "δ (eq. 5)"),
                                           (ub, rate.trajectory("u1")[:, 0, :], "u (eq. 8)"))):
        for j in range(est.shape[1]):
            axes[0, col].plot(tr, traj[:, j], color=f"C{j}", lw=1)
            axes[0, col].plot(tb, est[:, j], "o", color=f"C{j}", ms=3)
        axes[0, col].set(title=f"{nm}: rate circuit (lines) vs spike-decoded, 20 ms bins (dots)", xlabel="time (s)")
    _raster(axes[1, 0], sc.monitors["delta"], sc.delta_pop.N, sc.n_per, range(sc.W.shape[1]), tr[-1], "δ populations")
    _raster(axes[1, 1], sc.monitors["u"], sc.u_pop.N, sc.n_per, range(sc.W.shape[0]), tr[-1], "u populations")
    fig.tight_layout()
    path = out / "spiking_controller.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


@register_demo("spiking-hebbian")
def demo_hebbian(out: Path, seed: int = 0) -> list[Path]:
    """ΔW of the spike-based mirrored synapses against η δ xᵀ, ΔR against ΔWᵀ, and the rasters."""
    import brian2 as b2

    from circuits.spiking import SpikingHebbian

    _quiet()
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = HEBB_SIZE
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], s["d_pre"]) * rng.uniform(0.3, 1.0, s["d_pre"])
    d = rng.choice([-1.0, 1.0], s["d_post"]) * rng.uniform(0.3, 1.0, s["d_post"])
    c = SpikingHebbian(x, d, eta=s["eta"], n_per=s["n_per"], nu=s["nu"] * b2.Hz, window=s["window_s"] * b2.second,
                       dt=s["dt_ms"] * b2.ms, seed=seed).run()
    W, R = c.weights()
    want = s["eta"] * np.outer(d, x)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    axes[0].errorbar(want.ravel(), W.ravel(), yerr=c.expected_std().ravel(), fmt="o")
    lim = 1.2 * np.abs(want).max()
    axes[0].plot([-lim, lim], [-lim, lim], "k:")
    axes[0].set(xlabel="rate rule η δ xᵀ", ylabel="spiking ΔW (±1 σ shot noise)", title="E[ΔW] = η·post·pre")
    axes[1].plot(W.T.ravel(), R.ravel(), "o")
    axes[1].set(xlabel="ΔWᵀ", ylabel="ΔR", title="mirrored: ΔR = ε ΔWᵀ (ε = 1)")
    _raster(axes[2], c.monitors["pre"], c.pre_pop.N, c.n_per, range(s["d_pre"]), 0.5, "presynaptic x (first 0.5 s)")
    fig.tight_layout()
    path = out / "spiking_hebbian.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


# =============================================================================================
# the spiking layered network on digits, beside the rate circuit
# =============================================================================================

LAYERED = dict(sizes=(64, 30, 10), eta=0.02, n_train=300, n_test=400, every=100)


def layered_digits(seed: int = 0, n_train: int | None = None, every: int | None = None, n_test: int | None = None,
                   log=None):
    """Train :class:`circuits.spiking_layered.SpikingLayered` and :class:`circuits.amit.LayeredCircuit`
    online on the same digits from the same W₀, R₀ (URFB, η = 0.02); return a dict with the test
    errors (matrix forward of the learned weights) after every ``every`` examples, and both final
    weight sets.  ``log`` (a callable taking one line) hears of every chunk learned."""
    from circuits.amit import LayeredCircuit
    from circuits.spiking_layered import SpikingLayered
    from plasticity.network import forward

    from ..data import digits

    _quiet()
    cfg = dict(LAYERED)
    n_train, every, n_test = n_train or cfg["n_train"], every or cfg["every"], n_test or cfg["n_test"]
    d = digits(seed=seed)
    X, y = d.x_train[:n_train].astype(np.float64), d.y_train[:n_train]
    Xt, yt = d.x_test[:n_test].astype(np.float64), d.y_test[:n_test]
    sizes = cfg["sizes"]
    W0, R0, _, _ = PA.random_init(sizes, np.random.default_rng(seed + 1))

    def err(Ws):
        return float(np.mean(np.argmax(forward(Ws, None, Xt, PA.default_transfers(2)).output, 1) != yt))

    rate = LayeredCircuit(sizes, [w.copy() for w in W0], [r.copy() for r in R0], cfg["eta"], 1.0, 1.0)
    spk = SpikingLayered(sizes, [w.copy() for w in W0], [r.copy() for r in R0], cfg["eta"], seed=seed, chunk=every)
    seen, e_rate, e_spk = [0], [err(W0)], [err(W0)]
    for start in range(0, n_train, every):
        sl = slice(start, min(start + every, n_train))
        rate.train(X[sl], y[sl])
        spk.train(X[sl], y[sl])
        seen.append(sl.stop)
        e_rate.append(err(rate.weights()[0]))
        e_spk.append(err(spk.weights()[0]))
        if log:
            log(f"learned {sl.stop}/{n_train} examples: test error rate {e_rate[-1]:.3f}, spiking {e_spk[-1]:.3f}")
    return {"seen": seen, "rate": e_rate, "spiking": e_spk, "W0": W0, "R0": R0, "rate_weights": rate.weights(),
            "spiking_weights": spk.weights(), "n_test": len(yt)}


@register_demo("spiking-layered")
def demo_layered(out: Path, seed: int = 0, log=None) -> list[Path]:
    """Test error of the spiking 64-30-10 network learning digits online (URFB) beside the rate circuit."""
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = layered_digits(seed, log=log)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(res["seen"], res["rate"], "o-", label="rate circuit (circuits.amit.LayeredCircuit)")
    ax.plot(res["seen"], res["spiking"], "s-", label="spiking (circuits.spiking_layered)")
    ax.set(xlabel="examples seen (online, one pass)", ylabel=f"test error ({res['n_test']} digits)",
           title="64-30-10 on digits, URFB, η = 0.02", ylim=(0, 1))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "spiking_layered_digits.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]
