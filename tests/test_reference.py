"""bridge.checks.reference: the independent numpy references equal the plasticity rule code.

Each comparison is float64 to 1e-12 relative, and each test also shows that the tolerance is
tight enough to see a 1 % error in the plasticity function's output.
"""

from __future__ import annotations

import numpy as np
import pytest

import plasticity as P
from bridge.app.registry import max_rel_diff
from bridge.checks import reference as ref
from plasticity.learned_feedback import NP, RF, np_feedback_increments, rf_feedback_increments

TOL = 1e-12


def _net(rng, sizes, bias=True):
    Ws = [rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]) for i in range(len(sizes) - 1)]
    bs = [0.1 * rng.standard_normal(sizes[i + 1]) for i in range(len(sizes) - 1)] if bias else None
    return Ws, bs


def _assert_close_and_sensitive(got, want):
    """``got`` (plasticity) equals ``want`` (reference) to TOL, and 1.01 × got would not."""
    pairs = [(a, b) for a, b in zip(got, want) if a is not None or b is not None]
    assert pairs
    for a, b in pairs:
        assert a is not None and b is not None
        assert max_rel_diff(a, b) <= TOL
        assert max_rel_diff(1.01 * a, b) > 1e3 * TOL


@pytest.mark.parametrize("mode", ["layerwise", "direct"])
@pytest.mark.parametrize("n_samples,loss,labels", [(1, P.CrossEntropy(), True), (3, P.MSE(), False)])
def test_np_step_equals_plasticity(mode, n_samples, loss, labels):
    rng = np.random.default_rng(11)
    sizes = (6, 5, 4, 3)
    Ws, bs = _net(rng, sizes)
    d_last = sizes[-1] if mode == "direct" else None
    Rs = [None] + [0.3 * rng.standard_normal((sizes[l], d_last or sizes[l + 1])) for l in range(1, 3)]
    n = 8
    x = rng.standard_normal((n, 6))
    y = rng.integers(0, 3, n) if labels else rng.standard_normal((n, 3))
    tr = ["tanh", "tanh", "linear"]
    xis_list = [[rng.standard_normal((n, d)) for d in sizes[1:-1]] for _ in range(n_samples)]
    rule = NP(c_h=0.05, feedback_lr=2.0, ridge=1e-3, mode=mode, n_samples=n_samples)

    # the plasticity side: the increments of each noisy pass, averaged (n_samples convention)
    runs = [np_feedback_increments(rule, Ws, bs, Rs, x, y, tr, loss, xis) for xis in xis_list]
    incs = [None if runs[0][0][l] is None else sum(r[0][l] for r in runs) / n_samples for l in range(3)]
    info = runs[0][1]
    dWs, dbs = P.increments(info["deltas"], info["forward"].hs)
    lr = 0.1
    want_W = [W + lr * d for W, d in zip(Ws, dWs)]
    want_b = [b + lr * d for b, d in zip(bs, dbs)]
    want_R = [R if i is None else R + lr * rule.feedback_lr * i for R, i in zip(Rs, incs)]

    r_incs, r_deltas, _ = ref.np_increments(Ws, bs, Rs, x, y, tr, loss.name, xis_list, c_h=rule.c_h,
                                            ridge=rule.ridge, mode=mode)
    assert incs[0] is None and r_incs[0] is None
    _assert_close_and_sensitive(incs, r_incs)
    _assert_close_and_sensitive(info["deltas"], r_deltas)
    nW, nb, nR = ref.np_step_for(rule, Ws, bs, Rs, x, y, tr, loss, lr, xis_list)
    # the step's changes (not the states: W + 1 % of ΔW is still W to 1e-3)
    _assert_close_and_sensitive([a - w for a, w in zip(want_W, Ws)], [a - w for a, w in zip(nW, Ws)])
    _assert_close_and_sensitive([a - w for a, w in zip(want_b, bs)], [a - w for a, w in zip(nb, bs)])
    _assert_close_and_sensitive([a - r for a, r in zip(want_R[1:], Rs[1:])], [a - r for a, r in zip(nR[1:], Rs[1:])])


@pytest.mark.parametrize("decay,forward_rec", [(0.0, True), (1e-2, False)])
def test_rf_step_equals_plasticity(decay, forward_rec):
    rng = np.random.default_rng(5)
    sizes = (6, 5, 4, 3)
    Ws, bs = _net(rng, sizes)
    Rs = [None] + [0.3 * rng.standard_normal((sizes[l], sizes[l + 1])) for l in range(1, 3)]
    x, y = rng.standard_normal((8, 6)), rng.standard_normal((8, 3))
    xis = [None] + [rng.standard_normal((4, sizes[l])) for l in range(1, 3)]
    rule = RF(noise_std=0.5, feedback_lr=2.0, n_noise=4, decay=decay, forward_recirculation=forward_rec)
    tr = ["tanh", "tanh", "linear"]

    dRs, dWr = rf_feedback_increments(rule, Ws, Rs, xis)
    r_dRs, r_dWr = ref.rf_increments(Ws, Rs, xis, noise_std=rule.noise_std, decay=decay,
                                     forward_recirculation=forward_rec)
    _assert_close_and_sensitive(dRs, r_dRs)
    if forward_rec:
        _assert_close_and_sensitive(dWr, r_dWr)
    else:
        assert all(d is None for d in dWr + r_dWr)

    lr = 0.05
    fwd = P.forward(Ws, bs, x, tr)
    deltas = P.teaching_signals(rule, Ws, Rs, fwd, P.output_signal(P.MSE(), fwd, y, "linear"), tr)
    dWs, _ = P.increments(deltas, fwd.hs)
    want_dW = [lr * d + (0 if r is None else lr * rule.feedback_lr * r) for d, r in zip(dWs, dWr)]
    nW, _, nR = ref.rf_step_for(rule, Ws, bs, Rs, x, y, tr, P.MSE(), lr, xis)
    _assert_close_and_sensitive(want_dW, [a - w for a, w in zip(nW, Ws)])
    _assert_close_and_sensitive([lr * rule.feedback_lr * d for d in dRs[1:]], [a - r for a, r in zip(nR[1:], Rs[1:])])


@pytest.mark.parametrize("epsilon", [1.0, 0.0])
def test_urfb_online_equals_plasticity_sgd_step(epsilon):
    rng = np.random.default_rng(3)
    sizes = (12, 8, 5)
    Ws, _ = _net(rng, sizes, bias=False)
    Rs = [rng.uniform(-1, 1, (sizes[l], sizes[l + 1])) / np.sqrt(sizes[l + 1]) for l in range(2)]
    masks = [P.random_mask(w.shape, 0.3, rng) for w in Ws]
    rmasks = [P.random_mask(r.shape, 0.3, rng) for r in Rs]
    Ws = [w * m for w, m in zip(Ws, masks)]
    Rs = [r * m for r, m in zip(Rs, rmasks)]
    xs, ys = rng.normal(size=(30, 12)), rng.integers(0, 5, 30)
    tr = ["satlin", "linear"]
    rule = P.URFB(epsilon)
    pW, pR = [w.copy() for w in Ws], [r.copy() for r in Rs]
    for k in range(len(xs)):
        pW, _, pR, _, _ = P.sgd_step(rule, pW, None, pR, xs[k : k + 1], ys[k : k + 1], tr, P.Hinge(1.0), 0.05,
                                     masks=masks, rmasks=rmasks)
    rW, rR = ref.urfb_online(Ws, Rs, xs, ys, lr=0.05, epsilon=epsilon, transfers=tr, loss="hinge",
                             masks=masks, rmasks=rmasks)
    _assert_close_and_sensitive([a - w for a, w in zip(pW, Ws)], [a - w for a, w in zip(rW, Ws)])
    if epsilon:
        _assert_close_and_sensitive([a - r for a, r in zip(pR, Rs)], [a - r for a, r in zip(rR, Rs)])
    else:
        assert all(np.array_equal(a, r) for a, r in zip(rR, Rs))
