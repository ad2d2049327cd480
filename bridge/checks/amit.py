"""Cross-checks, demos and benchmark of the Amit (2021) circuits (:mod:`circuits.amit`).

Checks (``credit crossval``), all float64, tolerances justified next to each constant:

* ``amit-output-error`` — the Brian2 output error circuit (App. 1, Fig. 13–14) against eq. 6
  (``Hinge(mu).teaching`` / :func:`plasticity.amit.hinge_signal`) on random h and on boundary h
  (the thresholds ±1 exactly, values just inside/outside them, values near the bound ±M), for
  μ = 1 and μ = 0.3, in every δ/t cycle, and half-step by half-step against the matrix twin.
* ``amit-feedback-gate`` — the Brian2 shut-down circuit against eq. 3 (``satlin.gate(a)·δ``) on
  random and boundary inputs (a = ±1 exactly, δ = −K, δ just below K); plus a row showing that
  the circuit's own −K ≤ δ < K counter flags exactly the entries outside the bound (where the
  circuit is *not* eq. 3: δ = K with a control active gives −K) and that the default raises.
* ``amit-layered-mnist`` — :class:`circuits.amit.LayeredCircuit` learning online on MNIST (default
  784-100-10, 100 examples; ``--sizes``/``--examples`` override, ``--sizes 64-…`` uses the 8×8
  digits): (a) ``feedback_order='before_update'`` against the bridge's online torch run
  (:func:`bridge.checks.core.train_online`, the engine's URFB) and (b) the paper's Fig. 15 order
  ``'after_update'`` against its numpy twin :func:`plasticity.amit.train_online`; each for URFB
  (ε = 1), FRFB (ε = 0) and 50 % connectivity (separate W and R masks).  W and R ≤ 1e-9 relative.
* ``amit-layered-mnist-1000`` — the same on 784-1000-10 (URFB, cython target), ≥ 100 examples.

Data: MNIST from ``--data-dir``, else ``CREDIT_DATA_DIR``; when no MNIST files are found there
the check stops with an error naming both, before any check runs.  Only with
``--allow-substitute-data`` are the 8×8 digits upsampled 3× and zero-padded to 28×28 instead, and
then every such row's detail starts with ``SUBSTITUTE DATA``.  The Brian2 code-generation target is ``cython``
when a hidden layer has ≥ 500 units and ``numpy`` otherwise.

Demos (``credit circuit NAME``): ``output-error`` (Fig. 13 transfers, Fig. 14 traces of s, δ, t in
the four regimes), ``feedback-gate`` (u, v and the gated δ against x and δ) and ``layered`` (the
Fig. 15 schedule of both feedback orders, and a small circuit learning digits: hinge loss and the
W–R alignment over examples).

Bench ``circuit``: a 1000 × 1000 dense rate layer, ``h = W x`` and the Hebbian ``W += η h xᵀ`` every
step, Brian2 (cython) against a numpy loop on the same inputs, with and without plasticity.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import plasticity as P
from plasticity import amit as PA

from ..app.registry import CheckResult, max_rel_diff, register_bench, register_check, register_demo, register_preflight
from . import core

#: discrete maps of exactly representable values (δ, t ∈ {0, ±1, 1+ε, −μ, −μ−ε}; the gate passes δ
#: unchanged or gives 0): the circuits must reproduce eq. 6 / eq. 3 bit for bit.
TOL_DISCRETE = 0.0
#: the layered circuit sums synaptic inputs in another order than numpy's/torch's matmul; over
#: 100 online steps float64 round-off stays ~1e-16–1e-15 relative (observed), 1e-9 leaves a wide
#: margin while any algorithmic difference (η, order, a mask, one missed update) is ≫ 1e-6.
TOL_LAYERED = 1e-9
#: learning rate and init of the layered checks: N(0, 1/fan_in) weights (random_init, scale 1) and
#: η = 0.01 move W by ~30 % (relative Frobenius) over 100 MNIST examples, keeping |h_L| ≪ M, |Rδ| ≪ K.
ETA = 0.01
HIDDEN_CYTHON = 500  # a hidden layer at least this wide runs on the cython target


def _quiet():
    from circuits._brian import quiet_brian

    quiet_brian()


# =============================================================================================
# amit-output-error
# =============================================================================================


def _output_rows(h, labels, p: PA.OutputErrorParams, what: str, n_cycles: int = 4) -> CheckResult:
    from circuits.amit import output_error_signal, output_regimes

    signal, trace = output_error_signal(h, labels, p, n_cycles=n_cycles)
    want = PA.hinge_signal(h, labels, mu=p.mu, S=p.S)
    if p.S == 1.0:  # eq. 6 itself (hinge_signal is it, generalised to a threshold S)
        want = P.Hinge(p.mu).teaching(h, labels)
    # values lie in {1, 0, −μ}: the absolute difference is on the signal's own unit scale (1)
    diff = float(np.max(np.abs(signal - want)))
    diff = max(diff, max(float(np.max(np.abs(r - want))) for r in trace.reads()))  # every cycle reads eq. 6
    twin = PA.output_error_twin(h, labels, p, n_cycles=n_cycles)
    for name in ("delta", "tc", "read"):  # half-step by half-step the twin's map
        diff = max(diff, float(np.max(np.abs(getattr(trace, name) - getattr(twin, name)))))
    reg = output_regimes(trace)
    counts = ", ".join(f"{k} {int(np.sum(reg == k))}" for k in ("constant", "oscillating", "other"))
    return CheckResult(f"amit-output-error[{what}, μ={p.mu:g}]", diff, TOL_DISCRETE,
                       f"{h.size} units, M={p.M:g}, {n_cycles} cycles, all reads and δ/t traces; regimes: {counts}")


def _boundary_h(M: float, off: float):
    values = [-1.0, 1.0, 0.0, -1.0 - off, -1.0 + off, 1.0 - off, 1.0 + off, 2.0, -2.0,
              M - 2 * off, -M + 2 * off, 0.5 * M, -0.5 * M]
    C = 3  # each value in the presented class once and in a wrong class twice
    h = np.repeat(np.asarray(values)[:, None], C, axis=1)
    labels = np.arange(len(values)) % C
    return h, labels


@register_check("amit-output-error")
def check_output_error(opts) -> list[CheckResult]:
    """Output error circuit (Brian2) vs eq. 6, random and boundary h, μ = 1 and 0.3; exact."""
    _quiet()
    rng = np.random.default_rng(opts.seed)
    out = []
    for mu in (1.0, 0.3):
        p = PA.OutputErrorParams(M=1024.0, S=1.0, mu=mu, epsilon=0.5)
        h = rng.uniform(-3.0, 3.0, size=(200, 10))
        labels = rng.integers(0, 10, size=200)
        out.append(_output_rows(h, labels, p, "random"))
        # boundaries: 1e-9 from ±S is ≫ ulp(3M) = 4.5e-13, so the summed input h + 2Ms stays on
        # the correct side (see plasticity.amit.read_output_signal); the thresholds themselves are exact
        h, labels = _boundary_h(p.M, 1e-9)
        r1 = _output_rows(h, labels, p, "boundary")
        p4 = PA.OutputErrorParams(M=4.0, S=1.0, mu=mu, epsilon=0.5)
        h4, l4 = _boundary_h(p4.M, 1e-12)  # ulp(12) = 1.8e-15 ≪ 1e-12
        r2 = _output_rows(h4, l4, p4, "boundary")
        out.append(CheckResult(f"amit-output-error[boundary, μ={mu:g}]", max(r1.max_rel_diff, r2.max_rel_diff),
                               TOL_DISCRETE, "h = ±1 exactly, ±1 ∓/± 1e-9 (M=1024) and 1e-12 (M=4), ±2, near ±M, "
                               "both class roles; " + r1.detail.split("; ")[-1]))
    return out


# =============================================================================================
# amit-feedback-gate
# =============================================================================================


def _gate_diff(delta, a, K):
    from circuits.amit import feedback_shutdown

    res = feedback_shutdown(delta, a, K, on_violation="report")
    eq3 = P.get_transfer("satlin").gate(a) * delta
    g, u, v = PA.shutdown_twin(delta, a, K)
    diff = max(float(np.max(np.abs(res.gated - eq3))), float(np.max(np.abs(res.gated - g))),
               float(np.max(np.abs(res.u - u))), float(np.max(np.abs(res.v - v))))
    # the gated value is δ or 0: scale by max|δ| (the signal's own scale)
    return diff / max(float(np.max(np.abs(delta))), 1e-300), res


@register_check("amit-feedback-gate")
def check_feedback_gate(opts) -> list[CheckResult]:
    """Shut-down circuit (Brian2) vs eq. 3 on random and boundary inputs; exact; K bound flagged."""
    from circuits.amit import feedback_shutdown

    _quiet()
    rng = np.random.default_rng(opts.seed)
    K = 4.0
    out = []
    delta = rng.uniform(-K, K, size=2000)
    a = rng.uniform(-3.0, 3.0, size=2000)
    d, res = _gate_diff(delta, a, K)
    out.append(CheckResult("amit-feedback-gate[random]", d, TOL_DISCRETE,
                           f"{delta.size} units, δ ~ U[-K, K), a ~ U[-3, 3], K={K:g}; closed gates "
                           f"{int(np.sum(np.abs(a) >= 1))}; K bound checked by the circuit: "
                           f"{int(res.violations.sum())} violations"))
    avals = np.array([-1.0, 1.0, np.nextafter(1.0, 0.0), np.nextafter(-1.0, 0.0), np.nextafter(1.0, 2.0),
                      np.nextafter(-1.0, -2.0), 0.0, 2.0, -2.0])
    # K⁻⁻ = two ulps below K: the largest δ for which fl(δ − 2K) < −K when K is a power of two (see the
    # float-edge row below for nextafter(K, 0))
    k_in = np.nextafter(np.nextafter(K, 0.0), 0.0)
    dvals = np.array([-K, np.nextafter(-K, 0.0), k_in, 0.0, 1e-300, -1e-300, 1.0, -1.0, 0.5 * K])
    A, D = np.meshgrid(avals, dvals)
    d, res = _gate_diff(D, A, K)
    out.append(CheckResult("amit-feedback-gate[boundary]", d, TOL_DISCRETE,
                           "a = ±1 exactly (shut), ±1 one ulp inside/outside, δ = −K, −K + ulp, K − 2 ulp, ±1e-300; "
                           f"K bound checked: {int(res.violations.sum())} violations"))
    # the K bound: entries outside [−K, K) are where the circuit may differ from eq. 3
    dbad = np.array([K, K, K, 1.5 * K, -1.5 * K, np.nextafter(-K, -np.inf), 0.5 * K, -K])
    abad = np.array([1.0, -1.0, 0.0, 1.0, -1.0, 0.5, 1.0, -1.0])
    res = feedback_shutdown(dbad, abad, K, on_violation="report")
    want = PA.feedback_bound_violations(dbad, K)
    mismatch = int(np.sum(res.violations != want))
    try:
        feedback_shutdown(dbad, abad, K, on_violation="raise")
        raised = False
    except ValueError:
        raised = True
    eq3 = P.get_transfer("satlin").gate(abad) * dbad
    wrong = int(np.sum((res.gated != eq3) & ~want))  # a disagreement inside the bound would be a bug
    out.append(CheckResult("amit-feedback-gate[K bound]", float(mismatch + wrong + (0 if raised else 1)),
                           TOL_DISCRETE,
                           f"circuit flags {int(res.violations.sum())}/{int(want.sum())} entries outside [-K, K); "
                           f"at δ = K, a = 1 it gives {res.gated[0]:g} where eq. 3 gives {eq3[0]:g}; "
                           f"on_violation='raise' raised: {raised}"))
    # float edge: δ = nextafter(K, 0) with a control active; δ − 2K rounds to exactly −K, so σ_K would
    # pass −K where eq. 3 gives 0.  The bound counter tests fl(δ − 2K) ≥ −K, the very arithmetic of the
    # gate, so it must flag both entries (and the circuit must still equal its twin there).
    edge = np.array([np.nextafter(K, 0.0)] * 2)
    aedge = np.array([1.0, -1.0])
    res = feedback_shutdown(edge, aedge, K, on_violation="report")
    g, _, _ = PA.shutdown_twin(edge, aedge, K)
    unflagged = int((~res.violations.astype(bool)).sum())
    out.append(CheckResult("amit-feedback-gate[float edge δ = K⁻ flagged, circuit vs twin]",
                           max(float(np.max(np.abs(res.gated - g))) / K, float(unflagged)), TOL_DISCRETE,
                           f"δ = nextafter(K, 0), a = ±1: circuit {res.gated.tolist()}, flagged "
                           f"{2 - unflagged}/2 as outside the exact range"))
    return out


# =============================================================================================
# amit-layered-mnist
# =============================================================================================


SUBSTITUTE_FLAG = "--allow-substitute-data"


def _mnist_missing(opts) -> str | None:
    """Why MNIST cannot be read from ``opts.data_dir`` / ``$CREDIT_DATA_DIR`` (None: the files are there)."""
    from ..data import _IDX_FILES, DataError, _find_idx_dir, _find_idx_file

    try:
        folder = _find_idx_dir("mnist", opts.data_dir or None)
        for stem in _IDX_FILES.values():
            _find_idx_file(folder, stem, "mnist")
    except DataError as e:
        return str(e).split(": set --data-dir")[0]
    return None


def _layered_sizes(opts, default_sizes):
    sizes = tuple(opts.sizes or default_sizes)
    if sizes[-1] != 10:
        raise ValueError(f"--sizes: the layered checks classify 10 classes, so sizes must end in 10, got {sizes}")
    if sizes[0] not in (64, 784):
        raise ValueError(f"--sizes: the layered checks need sizes[0] = 784 (MNIST) or 64 (digits), got {sizes[0]}")
    return sizes


def _layered_preflight(default_sizes):
    def preflight(opts):
        sizes = _layered_sizes(opts, default_sizes)
        if sizes[0] == 784 and not opts.allow_substitute_data:
            why = _mnist_missing(opts)
            if why is not None:
                raise ValueError(f"MNIST not found ({why}): pass --data-dir DIR or set $CREDIT_DATA_DIR to a folder "
                                 f"holding mnist/ or its four IDX files, or use --sizes 64-…-10 (digits), or "
                                 f"{SUBSTITUTE_FLAG} to run on upsampled digits instead")
    return preflight


def _upsampled_digits(n, seed):
    from ..data import digits

    d = digits(seed=seed)
    x = d.x_train[:n].astype(np.float64).reshape(-1, 8, 8).repeat(3, axis=1).repeat(3, axis=2)
    X = np.zeros((len(x), 28, 28))
    X[:, 2:26, 2:26] = x
    return X.reshape(len(x), 784), d.y_train[:n].astype(np.int64)


def layered_examples(opts, d_in: int, n: int):
    """``(X, labels, note)``: the first n MNIST training images (784 inputs) or digits (64 inputs)."""
    from ..data import DataError, digits, load_dataset

    if d_in == 64:
        d = digits(seed=opts.seed)
        return d.x_train[:n].astype(np.float64), d.y_train[:n], "digits 8×8"
    if d_in != 784:
        raise ValueError(f"the layered checks need sizes[0] = 784 (MNIST) or 64 (digits), got {d_in}")
    data_dir = opts.data_dir or os.environ.get("CREDIT_DATA_DIR") or None
    try:
        ds = load_dataset("mnist", data_dir=data_dir, n_train=n, n_test=0)
        return ds.x_train.astype(np.float64), ds.y_train, "MNIST train"
    except DataError as e:
        if not opts.allow_substitute_data:
            raise DataError(f"{e} (or pass {SUBSTITUTE_FLAG} to run on upsampled digits)") from None
        X, y = _upsampled_digits(n, opts.seed)
        reason = str(e).split(": set --data-dir")[0]
        return X, y, (f"SUBSTITUTE DATA ({SUBSTITUTE_FLAG}): NO MNIST ({reason}), "
                      f"digits upsampled 3× to 28×28 instead")


def _rel_change(new, old):
    return [float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in zip(new, old)]


def _layered_pair(sizes, X, labels, *, epsilon, sparsity, order, seed, target, eta=ETA, mu=1.0):
    """Run the circuit and its reference from the same start; return (diff, detail pieces)."""
    from circuits.amit import LayeredCircuit

    Ws, Rs, wm, rm = PA.random_init(sizes, np.random.default_rng(seed + 1), 1.0, sparsity)
    circ = LayeredCircuit(sizes, Ws, Rs, eta, epsilon, mu, wmasks=wm, rmasks=rm, feedback_order=order,
                          target=target)
    rec = circ.train(X, labels)
    Wc, Rc = circ.weights()
    if order == "before_update":  # the torch engine: all δ with the old R, then the optimizer
        Wr, Rr = core.train_online(P.URFB(epsilon), sizes, Ws, Rs, X, labels, lr=eta, loss=P.Hinge(mu),
                                   masks=wm, rmasks=rm)
        extra = 0.0
    else:  # Fig. 15: δ_{l−1} from the updated R_l — only the numpy twin does this
        Wr, Rr, outs, dLs = PA.train_online(Ws, Rs, X, labels, eta=eta, epsilon=epsilon, mu=mu,
                                            wmasks=wm, rmasks=rm, feedback_order=order)
        extra = max(max_rel_diff(rec.outputs, outs), float(np.max(np.abs(rec.deltas - dLs))))
    diff = max(max(max_rel_diff(a, b) for a, b in zip(Wc, Wr)), max(max_rel_diff(a, b) for a, b in zip(Rc, Rr)),
               extra)
    loss = rec.hinge_loss(labels, mu)
    k = max(1, min(20, len(loss) // 4))
    info = (f"ΔW/W {'/'.join(f'{c:.2f}' for c in _rel_change(Wc, Ws))}, "
            f"ΔR/R {'/'.join(f'{c:.2f}' for c in _rel_change(Rc, Rs))}; "
            f"hinge first/last {k}: {loss[:k].mean():.2f}→{loss[-k:].mean():.2f}")
    return diff, info


_CONFIGS = (("urfb", 1.0, None), ("frfb", 0.0, None), ("urfb 50%", 1.0, 0.5))


def _layered_rows(opts, default_sizes, check, configs=_CONFIGS) -> list[CheckResult]:
    _quiet()
    sizes = _layered_sizes(opts, default_sizes)
    n = opts.examples or 100
    X, labels, note = layered_examples(opts, sizes[0], n)
    target = "cython" if max(sizes[1:-1], default=0) >= HIDDEN_CYTHON else "numpy"
    tag = "-".join(map(str, sizes))
    out = []
    for order, ref in (("before_update", "bridge torch"), ("after_update", "numpy twin")):
        for name, eps, sparsity in configs:
            diff, info = _layered_pair(sizes, X, labels, epsilon=eps, sparsity=sparsity, order=order, seed=opts.seed,
                                       target=target)
            if note.startswith("SUBSTITUTE"):
                detail = f"{note}; {tag}, {len(X)} substitute examples, η={ETA}, target {target}; {info}"
            else:
                detail = f"{tag}, {len(X)} {note} examples, η={ETA}, target {target}; {info}"
            out.append(CheckResult(f"{check}[{name}, {order} vs {ref}]", diff, TOL_LAYERED, detail))
    return out


register_preflight("amit-layered-mnist")(_layered_preflight((784, 100, 10)))
register_preflight("amit-layered-mnist-1000")(_layered_preflight((784, 1000, 10)))


@register_check("amit-layered-mnist")
def check_layered_mnist(opts) -> list[CheckResult]:
    """Layered circuit on MNIST (784-100-10, 100 examples) vs the bridge (a) and the numpy twin (b)."""
    return _layered_rows(opts, (784, 100, 10), "amit-layered-mnist")


@register_check("amit-layered-mnist-1000")
def check_layered_mnist_1000(opts) -> list[CheckResult]:
    """784-1000-10 (cython), URFB: vs the bridge (before_update) and the numpy twin (after_update).

    ``--sizes``/``--examples`` override the defaults (the fast tests run it small)."""
    return _layered_rows(opts, (784, 1000, 10), "amit-layered-mnist-1000", configs=_CONFIGS[:1])


# =============================================================================================
# demos
# =============================================================================================


def _plt():
    import matplotlib.pyplot as plt

    return plt


@register_demo("output-error")
def demo_output_error(out: Path, seed: int = 0) -> list[Path]:
    """Fig. 13 (σ_δ, σ_t) and Fig. 14-like traces of s, δ, t over half-cycles in the four regimes."""
    from circuits.amit import output_error_signal, output_regimes

    _quiet()
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = PA.OutputErrorParams(M=4.0, S=1.0, mu=0.5, epsilon=0.5)
    paths = []

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    H = np.linspace(-2 * p.M - 4, 2 * p.M + 4, 4001)
    axes[0].plot(H, PA.sigma_delta(H, p), lw=1.5, drawstyle="steps-mid", label="σ_δ(H)")
    for b, lab in ((p.M, "±M"), (2 * p.M + p.S, "±(2M+S)")):
        axes[0].axvline(b, ls=":", color="gray")
        axes[0].axvline(-b, ls=":", color="gray")
        axes[0].text(b, 1.55, lab, ha="center", fontsize=8)
    axes[0].set(title=f"Fig. 13 left: σ_δ  (M={p.M:g}, S={p.S:g}, μ={p.mu:g}, ε={p.epsilon:g})",
                xlabel="H = h + 2M s − 2M t", ylabel="δ_c", ylim=(-1.3, 1.75))
    x = np.linspace(-2, 2, 2001)
    axes[1].plot(x, PA.sigma_t(x, p.mu), lw=1.5, color="C1", label="σ_t(δ)")
    axes[1].axvline(1.0, ls=":", color="gray")
    axes[1].axvline(-p.mu, ls=":", color="gray")
    axes[1].set(title="Fig. 13 right: σ_t  (silent on [−μ, 1])", xlabel="δ_c", ylabel="t_c")
    for ax in axes:
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(out / "output_error_transfers.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # four regimes: (presented class, h ≤ S) learn; (presented, h > S) correct; the same for wrong classes
    h = np.array([[0.5, -2.0], [-0.5, 2.0]])
    labels = np.array([0, 1])
    n_cycles = 4
    signal, trace = output_error_signal(h, labels, p, n_cycles=n_cycles)
    regimes = output_regimes(trace)
    s = PA.supervisory(labels, 2)
    cases = [(0, 0, "class, h = 0.5 ≤ 1: learn"), (1, 1, "class, h = 2 > 1: correct"),
             (1, 0, "not class, h = −0.5 ≥ −1: learn"), (0, 1, "not class, h = −2 < −1: correct")]
    fig, axes = plt.subplots(3, 4, figsize=(13, 7), sharex=True)
    k = np.arange(-1, 2 * n_cycles)  # half-step −1: the initial state (t = 0)
    for col, (n, c, title) in enumerate(cases):
        d = np.concatenate([[0.0], trace.delta[:, n, c]])
        t = np.concatenate([[0.0], trace.tc[:, n, c]])
        e = np.concatenate([[0.0], trace.read[:, n, c]])
        axes[0, col].step(k, np.full(k.shape, s[n, c]), where="post", color="k")
        axes[1, col].step(k, d, where="post", label="δ_c")
        axes[1, col].plot(k[2::2], e[2::2], "o", color="C3", label="read e = δ·1[t=0]")
        axes[2, col].step(k, t, where="post", color="C1")
        axes[0, col].set_title(f"{title}\n{regimes[n, c]}; eq. 6 = {PA.hinge_signal(h, labels, p.mu)[n, c]:g}, "
                               f"read {signal[n, c]:g}", fontsize=9)
        axes[0, col].set_ylim(-1.3, 1.3)
        axes[1, col].set_ylim(-1.3, 1.8)
        axes[2, col].set_ylim(-1.3, 1.3)
        axes[2, col].set_xlabel("half-cycle (even: δ update, odd: t update)")
        for r in range(3):
            axes[r, col].grid(alpha=0.3)
    axes[0, 0].set_ylabel("supervisory s_c")
    axes[1, 0].set_ylabel("output unit δ_c")
    axes[2, 0].set_ylabel("control unit t_c")
    axes[1, 0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Fig. 14: output error circuit (Brian2), M={p.M:g}, μ={p.mu:g}, ε={p.epsilon:g}")
    fig.tight_layout()
    paths.append(out / "output_error_regimes.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


@register_demo("feedback-gate")
def demo_feedback_gate(out: Path, seed: int = 0) -> list[Path]:
    """u, v and the gated δ against the feed-forward x and the feedback δ (eq. 3): shut at |x| ≥ 1."""
    from circuits.amit import feedback_shutdown

    _quiet()
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    K = 1.0
    a = np.linspace(-2, 2, 401)
    dvals = np.array([-0.9, -0.4, 0.3, 0.8]) * K
    A, D = np.meshgrid(a, dvals)
    res = feedback_shutdown(D, A, K)
    ga = np.linspace(-2, 2, 201)
    gd = np.linspace(-K, K, 201, endpoint=False)
    GA, GD = np.meshgrid(ga, gd)
    grid = feedback_shutdown(GD, GA, K)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    x = np.clip(a, -1, 1)
    axes[0].plot(a, x, color="gray", ls="--", label="x = satlin(h)")
    axes[0].plot(a, res.u[0], label="u = 1[x ≥ 1]")
    axes[0].plot(a, res.v[0], label="v = −1[x ≤ −1]")
    axes[0].set(title="control units from the feed-forward activity", xlabel="feed-forward input h", ylabel="rate")
    for i, dv in enumerate(dvals):
        axes[1].plot(a, res.gated[i], label=f"δ = {dv:g}")
    axes[1].axvspan(-2, -1, color="0.9")
    axes[1].axvspan(1, 2, color="0.9")
    axes[1].set(title="gated δ̃ = σ_K(δ − 2Ku + 2Kv): 0 for |x| ≥ 1", xlabel="feed-forward input h",
                ylabel="gated feedback δ̃")
    im = axes[2].pcolormesh(ga, gd, grid.gated, cmap="RdBu_r", vmin=-K, vmax=K, shading="auto")
    fig.colorbar(im, ax=axes[2], label="δ̃")
    axes[2].set(title=f"δ̃ over (h, δ), K = {K:g} (δ ∈ [−K, K))", xlabel="feed-forward input h",
                ylabel="top-down feedback δ")
    for ax in axes[:2]:
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    fig.suptitle("Feedback shut-down circuit (Brian2), eq. 3 and Appendix 1")
    fig.tight_layout()
    path = out / "feedback_gate.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


_PHASES = (  # (substring of the slot text, phase, colour)
    ("present", "input", "0.75"), ("supervisory", "input", "0.75"), ("check", "bound check", "0.6"),
    ("cycle", "output circuit δ/t", "C1"), ("<- delta_", "read / gate δ", "C3"), ("+= eta", "plasticity W, R", "C2"),
    ("u_", "control u, v", "C4"), ("fb_", "feedback R δ", "C0"), ("h_", "feed-forward", "C9"),
    ("x_", "feed-forward", "C9"),
)


def _phase(what):
    for key, ph, col in _PHASES:
        if key in what:
            return ph, col
    return "other", "k"


def _corr(W, R):
    a, b = W.ravel(), R.T.ravel()
    return float(np.corrcoef(a, b)[0, 1])


@register_demo("layered")
def demo_layered(out: Path, seed: int = 0, log=None) -> list[Path]:
    """Fig. 15 schedule (both feedback orders) and a small layered circuit learning the digits."""
    from matplotlib.patches import Patch

    from circuits.amit import LayeredCircuit

    from ..data import digits

    _quiet()
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    import gc

    from brian2.utils.logger import catch_logs

    sched = (8, 4, 3, 2)  # two hidden layers, so that Fig. 15's x_{2,·} layer exists
    fig, axes = plt.subplots(1, 2, figsize=(14, 9))
    for ax, order in zip(axes, ("after_update", "before_update")):
        with catch_logs():  # built only to read its schedule: no "never included in a network" warnings
            c = LayeredCircuit(sched, seed=seed, feedback_order=order, record=False, name="amit_sched")
            slots = [(s.order, s.what) for s in c.schedule]
            del c
            gc.collect()
        for y, (o, what) in enumerate(slots):
            ph, col = _phase(what)
            ax.barh(y, 1, color=col, alpha=0.55)
            ax.text(0.02, y, f"{o:2d}  {what}", va="center", fontsize=7.5, family="monospace")
        ax.set_ylim(len(slots) - 0.5, -0.5)
        ax.set_xlim(0, 1)
        ax.set_xticks([])
        ax.set_ylabel("run_regularly slot (when='groups', order) within one example's time step")
        ax.set_title("Fig. 15 order: δ_{l−1} from the updated R_l" if order == "after_update"
                     else "before_update: all δ from the old R (= torch engine)", fontsize=10)
    if log:
        log("drew the Fig. 15 schedules; building the 64-30-10 circuit (compiles on first use)")
    seen = {}
    for _, ph, col in _PHASES:
        seen.setdefault(ph, col)
    fig.legend([Patch(color=c, alpha=0.55) for c in seen.values()], list(seen), loc="lower center", ncol=8,
               fontsize=8)
    fig.suptitle(f"LayeredCircuit schedule for sizes {'-'.join(map(str, sched))}: one example per step")
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    paths.append(out / "layered_schedule.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # learning: 64-30-10 on digits, URFB in the Fig. 15 order; circuit at chunk ends, twin per example
    d = digits(seed=seed)
    sizes, n, chunk, eta, mu = (64, 30, 10), 300, 30, ETA, 1.0
    X, y = d.x_train[:n].astype(np.float64), d.y_train[:n]
    Ws, Rs, _, _ = PA.random_init(sizes, np.random.default_rng(seed + 1))
    circ = LayeredCircuit(sizes, Ws, Rs, eta, 1.0, mu, name="amit_demo")
    loss, ccorr, cstep = [], [], []
    for k in range(0, n, chunk):
        loss.append(circ.train(X[k:k + chunk], y[k:k + chunk]).hinge_loss(y[k:k + chunk], mu))
        Wc, Rc = circ.weights()
        ccorr.append([_corr(W, R) for W, R in zip(Wc, Rc)])
        cstep.append(k + chunk)
        if log:
            log(f"circuit learned {k + chunk}/{n} digits (mean hinge loss of the chunk {loss[-1].mean():.3f})")
    loss = np.concatenate(loss)
    twin = {}
    for name, eps in (("URFB ε=1", 1.0), ("FRFB ε=0", 0.0)):
        W, R, corr = Ws, Rs, []
        for i in range(n):
            W, R, _, _ = PA.train_online(W, R, X[i:i + 1], y[i:i + 1], eta=eta, epsilon=eps, mu=mu)
            corr.append([_corr(a, b) for a, b in zip(W, R)])
        twin[name] = np.array(corr)
        if log:
            log(f"numpy twin, {name}: {n} digits")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    w = 20
    axes[0].plot(np.arange(1, n + 1), loss, ".", ms=3, alpha=0.4, label="per example (online, before update)")
    axes[0].plot(np.arange(w, n + 1), np.convolve(loss, np.ones(w) / w, mode="valid"), lw=2,
                 label=f"moving mean ({w})")
    axes[0].set(title=f"Brian2 layered circuit {'-'.join(map(str, sizes))} on digits (URFB, Fig. 15 order, η={eta})",
                xlabel="example", ylabel="hinge loss (eq. 4)")
    for name, ls in zip(twin, ("-", "--")):
        for l in range(len(sizes) - 1):
            axes[1].plot(np.arange(1, n + 1), twin[name][:, l], ls=ls, color=f"C{l}",
                         label=f"layer {l + 1}, {name} (numpy twin)")
    ccorr = np.array(ccorr)
    for l in range(len(sizes) - 1):
        axes[1].plot(cstep, ccorr[:, l], "o", color=f"C{l}", mfc="none", label=f"layer {l + 1}, URFB (Brian2)")
    axes[1].set(title="alignment of W_l and R_lᵀ", xlabel="example", ylabel="corr(W_l, R_lᵀ)")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(out / "layered_learning.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


# =============================================================================================
# bench: 1000 × 1000 Hebbian rate layer, Brian2 vs numpy
# =============================================================================================

BENCH_N = 1000
BENCH_CAPACITY = 1024  # input rows of the TimedArray: fixed, so the cython cache key never changes
BENCH_ETA = 1e-3


def _brian_layer(W0, X, plastic: bool, target: str):
    import brian2 as b2

    from circuits._brian import codegen_target, set_weights

    dt = b2.defaultclock.dt
    n = W0.shape[0]
    xin = b2.TimedArray(X, dt=dt, name="bench_x")
    pre = b2.NeuronGroup(n, "y : 1", dt=dt, name="bench_pre")
    post = b2.NeuronGroup(n, "a : 1", dt=dt, name="bench_post")
    pre.run_regularly("y = bench_x(t, i)", when="groups", order=0, name="bench_present")
    S = b2.Synapses(pre, post, "w : 1\na_post = w*y_pre : 1 (summed)", dt=dt, name="bench_syn")
    with codegen_target(target):
        S.connect(True)
    set_weights(S, W0)
    upd = S.summed_updaters["a_post"]
    upd.when, upd.order = "groups", 1  # h = W x
    if plastic:  # W += η h xᵀ: post (h) × pre (x)
        S.run_regularly("w += eta*a_post*y_pre", when="groups", order=2, name="bench_hebb")
    return b2.Network(pre, post, S, name="bench_net"), S, {"bench_x": xin, "eta": BENCH_ETA}


def _numpy_layer(W, X, k0, k1, plastic, buf):
    """The same math as the Brian2 layer, in place: h = W x; W += (η h) xᵀ (η·a_post·y_pre, same order)."""
    for k in range(k0, k1):
        x = X[k]
        h = W @ x
        if plastic:
            np.multiply.outer(BENCH_ETA * h, x, out=buf)
            np.add(W, buf, out=W)
    return W


def _one_blas_thread():
    """Limit BLAS to one thread (Brian2's generated loops run on one): fair, and immune to the
    spin-wait slowdowns of a multi-threaded gemv on a shared machine."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        import contextlib

        return contextlib.nullcontext(), "BLAS threads as configured"
    return threadpool_limits(1), "1 BLAS thread"


@register_bench("circuit")
def bench_circuit(opts) -> Iterator[dict]:
    """ms/step of a 1000×1000 dense rate layer (h = W x, Hebbian W += η h xᵀ) in Brian2 vs numpy.

    Both run the same steps on the same inputs in this process, one thread each.  Brian2's build
    and compilation are excluded: each network first runs a 5-step warm-up (which compiles, or loads
    from the cython cache).  Each round then times ``run(1 step)`` and ``run(n steps)``; the per-step
    time is (T(n) − T(1))/(n − 1), which also removes the fixed setup cost of every
    ``Network.run`` call (reported in the detail).  The numpy loop is timed over the same n steps.
    Median of 3 rounds (1 with ``--quick``): the machine is shared.  The final W of both is compared.
    """
    import brian2 as b2

    from circuits._brian import codegen_target, get_weights

    _quiet()
    rng = np.random.default_rng(opts.seed)
    n_steps = 50 if opts.quick else 300
    rounds = 1 if opts.quick else 3
    warm = 5
    X = rng.uniform(0.0, 1.0, (BENCH_CAPACITY, BENCH_N)) / np.sqrt(BENCH_N)
    W0 = rng.standard_normal((BENCH_N, BENCH_N)) / np.sqrt(BENCH_N)
    assert warm + rounds * (n_steps + 1) <= BENCH_CAPACITY
    target = "cython"
    dt = b2.defaultclock.dt
    for plastic in (True, False):
        t0 = time.perf_counter()
        try:
            net, S, ns = _brian_layer(W0, X, plastic, target)
            with codegen_target(target):
                net.run(warm * dt, namespace=ns)
        except Exception:  # no working C compiler: fall back, and say so in the row name
            target = "numpy"
            net, S, ns = _brian_layer(W0, X, plastic, target)
            with codegen_target(target):
                net.run(warm * dt, namespace=ns)
        build = time.perf_counter() - t0
        W, buf = W0.copy(), np.empty_like(W0)
        limit, blas = _one_blas_thread()
        bs, nps, overhead = [], [], []
        with limit:
            _numpy_layer(W, X, 0, warm, plastic, buf)
            k = warm
            for _ in range(rounds):
                with codegen_target(target):
                    t1 = time.perf_counter()
                    net.run(dt, namespace=ns)
                    t2 = time.perf_counter()
                    net.run(n_steps * dt, namespace=ns)
                    t3 = time.perf_counter()
                per = ((t3 - t2) - (t2 - t1)) / (n_steps - 1)
                bs.append(per)
                overhead.append((t2 - t1) - per)
                _numpy_layer(W, X, k, k + 1, plastic, buf)
                t1 = time.perf_counter()
                _numpy_layer(W, X, k + 1, k + 1 + n_steps, plastic, buf)
                nps.append((time.perf_counter() - t1) / n_steps)
                k += n_steps + 1
        b, nmp = float(np.median(bs)), float(np.median(nps))
        same = max_rel_diff(get_weights(S), W)
        kind = "Hebbian" if plastic else "static (no plasticity)"
        steps = f"median of {rounds}×{n_steps} steps after a {warm}-step warm-up"
        yield {"name": f"circuit {BENCH_N}x{BENCH_N} {kind}: brian2[{target}], excl. build/compile",
               "value": b * 1e3, "unit": "ms/step", "ratio": b / nmp,
               "detail": f"{steps}; build + warm-up {build:.1f} s and Network.run setup "
                         f"{np.median(overhead) * 1e3:.0f} ms per call excluded; "
                         f"final W vs numpy max rel diff {same:.1e}"}
        yield {"name": f"circuit {BENCH_N}x{BENCH_N} {kind}: numpy loop ({blas})", "value": nmp * 1e3,
               "unit": "ms/step", "ratio": 1.0, "detail": steps}
