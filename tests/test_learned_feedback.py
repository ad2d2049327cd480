"""Learned feedback — node perturbation (Lansdell 2019) and reciprocal feedback by recirculation
(Cameron et al.) — against mathematics, float64, tolerances stated per test."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import bridge.learned_feedback as BLF
import plasticity as P
from bridge.app.runs import TrainConfig, run_experiment
from bridge.engines import ENGINES
from bridge.losses import TeachingLoss
from bridge.network import FeedbackMLP
from plasticity.learned_feedback import (
    NP,
    RF,
    RFExact,
    ls_closed_form,
    ls_increment,
    mp_residuals,
    noisy_forward,
    np_estimator,
    np_target,
    recirculation_increments,
    recirculation_step,
    rel_error,
    rf_closed_form_signal,
)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _weights(sizes, rng, scale=1.0):
    return [scale * rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]) for i in range(len(sizes) - 1)]


# --------------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------------


def test_learned_feedback_imports_neither_torch_nor_brian2():
    code = "import sys, plasticity.learned_feedback; print(any(m in sys.modules for m in ('torch', 'brian2')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_rules_registered_and_validated():
    assert isinstance(P.make_rule("np", c_h=0.1), NP)
    assert isinstance(P.make_rule("rf"), RF)
    assert isinstance(P.make_rule("rf-exact"), RFExact)
    assert P.make_rule("np", mode="direct").direct and not P.make_rule("np").direct
    for bad, match in [(dict(c_h=0.0), "c_h"), (dict(c_h=-1), "c_h"), (dict(ridge=-0.1), "ridge"),
                       (dict(feedback_lr=-1), "feedback_lr"), (dict(mode="dfa"), "mode"), (dict(n_samples=0), "n_samples")]:
        with pytest.raises(ValueError, match=match):
            NP(**bad)
    for bad, match in [(dict(noise_std=0), "noise_std"), (dict(n_noise=1.5), "n_noise"), (dict(decay=-1), "decay"),
                       (dict(forward_recirculation="yes"), "forward_recirculation")]:
        with pytest.raises(ValueError, match=match):
            RF(**bad)
    assert NP in ENGINES and RF in ENGINES


# --------------------------------------------------------------------------------------------------
# node perturbation
# --------------------------------------------------------------------------------------------------


def test_estimator_averages_to_the_true_gradient():
    """Mean of λ̂ over K = 40 000 noise draws (noise on all hidden layers at once) vs ∂L/∂h from
    backprop, one example of a tanh network: relative error < 0.08; the wrong sign gives ≈ 2."""
    rng = _rng(1)
    sizes, tr = (5, 6, 4, 3), ["tanh", "tanh", "linear"]
    Ws = _weights(sizes, rng)
    x, y = rng.standard_normal((1, 5)), rng.standard_normal((1, 3))
    loss, c, K = P.MSE(), 0.01, 40_000
    fwd = P.forward(Ws, None, x, tr)
    deltas = P.teaching_signals(P.BP(), Ws, None, fwd, P.output_signal(loss, fwd, y, tr[-1]), tr)
    xs, ys = np.repeat(x, K, 0), np.repeat(y, K, 0)
    xis = [rng.standard_normal((K, d)) for d in sizes[1:-1]]
    L = loss.value(P.forward(Ws, None, xs, tr).output, ys)
    Lt = loss.value(noisy_forward(Ws, None, xs, tr, xis, c), ys)
    for l in (1, 2):
        dL_dh = -(deltas[l] @ Ws[l])[0]  # ∂L/∂h_{l}  (our δ = −∂L/∂a)
        lam = np_estimator(Lt, L, xis[l - 1], c).mean(0)
        assert rel_error(lam, dL_dh) < 0.08
        assert rel_error(-lam, dL_dh) > 1.8  # a sign error cannot pass
        assert np.allclose(np_target(Lt, L, xis[l - 1], c), -np_estimator(Lt, L, xis[l - 1], c))


def test_least_squares_increment_is_the_negative_gradient_and_closed_form_is_its_zero():
    rng = _rng(2)
    R = torch.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    d, t = torch.tensor(rng.standard_normal((40, 3))), torch.tensor(rng.standard_normal((40, 5)))
    ridge = 0.1
    obj = 0.5 * ((d @ R.T - t) ** 2).sum(1).mean() + 0.5 * ridge * (R**2).sum()
    obj.backward()
    inc = ls_increment(R.detach(), d, t, ridge)
    assert torch.allclose(inc, -R.grad, atol=1e-13, rtol=0)
    Rs = ls_closed_form(d.numpy(), t.numpy(), ridge)
    assert np.abs(ls_increment(Rs, d.numpy(), t.numpy(), ridge)).max() < 1e-12


def test_linear_theorem_least_squares_converges_to_W_as_noise_shrinks():
    """Lansdell Theorem 2 (identity σ, MSE): the least-squares R_l from T = 20 000 samples approaches
    W_lᵀ as c_h falls.  Same ξ draws for every c_h.  Measured (seed 0): layer 2 0.62 → 0.27 → 0.17 →
    0.15, layer 3 0.24 → 0.08 → 0.05 → 0.05 for c_h = 3, 1, 0.3, 0.1 (the floor is the 1/√T variance).
    Asserted: error at c_h = 0.1 below 0.2 / 0.08 and errors non-increasing (5 % slack) as c_h falls.
    Sizes keep every ẽẽᵀ full rank (Lansdell's assumption A3)."""
    rng = _rng(0)
    sizes, tr = (6, 5, 4, 4), ["linear"] * 3
    Ws = _weights(sizes, rng)
    T = 20_000
    x, y = rng.standard_normal((T, 6)), rng.standard_normal((T, 4))
    xis = [rng.standard_normal((T, d)) for d in sizes[1:-1]]
    loss = P.MSE()
    fwd = P.forward(Ws, None, x, tr)
    deltas = P.teaching_signals(P.BP(), Ws, None, fwd, P.output_signal(loss, fwd, y, "linear"), tr)
    errs = []
    for c in (3.0, 1.0, 0.3, 0.1):
        Lt = loss.value(noisy_forward(Ws, None, x, tr, xis, c), y)
        errs.append([rel_error(ls_closed_form(deltas[l], np_target(Lt, loss.value(fwd.output, y), xis[l - 1], c)),
                               Ws[l].T) for l in (1, 2)])
    errs = np.array(errs)
    assert errs[-1, 0] < 0.2 and errs[-1, 1] < 0.08
    assert np.all(errs[1:] <= errs[:-1] * 1.05)
    assert errs[0, 0] > 2 * errs[-1, 0]


def test_linear_theorem_in_the_torch_engine_B_converges_to_W():
    """Online least squares in the torch hook (W frozen, linear 6-5-4-4, c_h = 0.01): rel‖R − Wᵀ‖
    from ≈1.3 to below 0.2 for layers 2 and 3 after 2000 minibatches of 128 at lr 0.1 and 2000 at
    lr 0.02 (measured 0.10 and 0.06; constant-lr SGD would stall at its noise floor)."""
    rng = _rng(3)
    g = torch.Generator().manual_seed(0)
    model = FeedbackMLP((6, 5, 4, 4), NP(c_h=0.01, seed=1), activation="linear", bias=False, generator=g,
                        dtype=torch.float64)
    x = torch.tensor(rng.standard_normal((2000, 6)))
    y = torch.tensor(rng.standard_normal((2000, 4)))
    before = BLF.learned_feedback_metrics(model)["rel_dist"]
    W0 = [w.detach().clone() for w in model.weights()]
    BLF.fit_feedback(model, x, y, TeachingLoss("mse"), steps=2000, lr=0.1, batch_size=128, seed=4)
    BLF.fit_feedback(model, x, y, TeachingLoss("mse"), steps=2000, lr=0.02, batch_size=128, seed=5)
    after = BLF.learned_feedback_metrics(model)["rel_dist"]
    assert min(before) > 0.8 and max(after) < 0.2
    assert all(torch.equal(a, b) for a, b in zip(W0, model.weights()))


def _np_model(rule, sizes=(6, 5, 4, 3), activation="tanh"):
    g = torch.Generator().manual_seed(5)
    return FeedbackMLP(sizes, rule, activation=activation, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("mode", ["layerwise", "direct"])
def test_np_torch_step_equals_the_matrix_reference(mode):
    """One SGD step of the engine (backward + NP hook + optimizer) equals the numpy reference
    :func:`np_reference_step` on the same noise, to 1e-12 relative."""
    rule = NP(c_h=0.05, feedback_lr=3.0, ridge=0.01, mode=mode, n_samples=2, seed=7)
    model = _np_model(rule)
    rng = _rng(6)
    x, y = torch.tensor(rng.standard_normal((8, 6))), torch.tensor(rng.integers(0, 3, 8))
    crit, lr = TeachingLoss("ce"), 0.1
    Ws = [w.detach().numpy().copy() for w in model.weights()]
    bs = [b.detach().numpy().copy() for b in model.biases()]
    Rs = [None if r is None else r.detach().numpy().copy() for r in model.feedbacks()]
    BLF.noise_generator(model, seed=11)
    noise = BLF.draw_np_noise(model, 8)
    BLF.noise_generator(model, seed=11)  # the engine redraws the same ξ
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    crit(model(x), y).backward()  # the network's engine does the noisy pass and sets R.grad
    opt.step()
    # reference: mean over the n_samples noisy passes
    ref = [BLF.np_reference_step(rule, Ws, bs, Rs, x.numpy(), y.numpy(), model.transfers, P.CrossEntropy(), lr,
                                 [a.numpy() for a in xis]) for xis in noise]
    want_R = [None if Rs[l] is None else np.mean([r[2][l] for r in ref], 0) for l in range(3)]
    for l, lin in enumerate(model.linears):
        assert np.abs(lin.weight.detach().numpy() - ref[0][0][l]).max() < 1e-12
        if want_R[l] is not None:
            got = lin.feedback.detach().numpy()
            assert np.abs(got - want_R[l]).max() / np.abs(want_R[l]).max() < 1e-12
            assert not np.allclose(got, Rs[l])


def test_np_learns_and_its_feedback_aligns():
    """digits, 64-50-20-10 tanh, cross-entropy: the test loss falls by ≥ 40 % (measured 2.3 → ≈1.0
    in 5 epochs), W changes, and R_l moves toward W_lᵀ: rel‖R − Wᵀ‖ of the top layer falls by ≥ 20 %
    and the top hidden layer's angle to BP drops below FA's 60° level (measured ≈0.5 and ≈20–35°)."""
    cfg = TrainConfig(task="digits", rule="np", sizes=(64, 50, 20, 10), epochs=5, quiet=True, seed=0,
                      rule_params={"c_h": 0.01, "feedback_lr": 1.0})
    s = run_experiment(cfg, write=False)
    h = s["history"]
    assert h[-1]["test_loss"] < 0.6 * h[0]["test_loss"]
    assert h[-1]["rel_dist"][-1] < 0.8 * h[0]["rel_dist"][-1]
    assert h[-1]["angle_bp_deg"][-1] < 45.0
    W_end = s["model"].weights()[0].detach()
    W_start = FeedbackMLP((64, 50, 20, 10), "np", generator=torch.Generator().manual_seed(0)).weights()[0]
    assert not torch.allclose(W_end, W_start.to(W_end.dtype), atol=1e-3)


# --------------------------------------------------------------------------------------------------
# recirculation and RF
# --------------------------------------------------------------------------------------------------


def test_recirculation_increments_match_the_mean_flow():
    """With E[xxᵀ] = σ²I the batch increments average to ΔA = σ²A(I − BA), ΔB = σ²(I − BA)Aᵀ."""
    rng = _rng(8)
    A, B = rng.standard_normal((3, 5)), rng.standard_normal((5, 3))
    x = 0.5 * rng.standard_normal((200_000, 5))
    dA, dB = recirculation_increments(A, B, x)
    I = np.eye(5)
    assert rel_error(dA, 0.25 * A @ (I - B @ A)) < 0.02
    assert rel_error(dB, 0.25 * (I - B @ A) @ A.T) < 0.02


def _well_conditioned(rng, k, n):
    """A (k, n) with singular values 0.6 … 1.4 (so the slowest mode of the flow is not tiny)."""
    U, _ = np.linalg.qr(rng.standard_normal((k, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return U @ np.diag(np.linspace(0.6, 1.4, k)) @ V.T


@pytest.mark.parametrize("learn_A", [False, True])
def test_recirculation_mean_flow_reaches_the_pseudoinverse(learn_A):
    """Whitened noise (the batch x = √n·I, so ⟨xxᵀ⟩ = I exactly) gives the mean flow of the poster's
    rules; 2000 steps at η = 0.1 bring all four Moore–Penrose residuals of B as A⁺ below 1e-10
    (from ≈1), with A fixed (RF) or learning concurrently (the poster's autoencoder)."""
    rng = _rng(9)
    A, B = _well_conditioned(rng, 4, 7), 0.1 * rng.standard_normal((7, 4))
    r0 = mp_residuals(A, B)
    A0, x = A.copy(), np.sqrt(7) * np.eye(7)
    for _ in range(2000):
        A, B = recirculation_step(A, B, x, 0.1 if learn_A else 0.0, 0.1)
    r1 = mp_residuals(A, B)
    assert min(r0.values()) > 0.5 and max(r1.values()) < 1e-10, (r0, r1)
    assert rel_error(B, np.linalg.pinv(A)) < 1e-10
    assert np.array_equal(A, A0) != learn_A


@pytest.mark.parametrize("learn_A", [False, True])
def test_recirculation_with_gaussian_noise_converges_to_the_pseudoinverse(learn_A):
    """Gaussian noise, batches of 256, η = 0.1 → 0.02 → 0.004 (1000 steps each): all four MP residuals
    fall ≥ 30× (from ≈1.0–1.3).  Measured: AXA, XAX, (AX)ᵀ to ≈1e-15 (A·B = I is reached exactly once
    the sample flow contracts it); (XA)ᵀ = XA to ≈1e-2, the sampling floor of the null-space part of B
    (std ≈ √(η / (2 s² m)))."""
    rng = _rng(9)
    A, B = _well_conditioned(rng, 4, 7), 0.1 * rng.standard_normal((7, 4))
    r0 = mp_residuals(A, B)
    for lr in (0.1, 0.02, 0.004):
        for _ in range(1000):
            A, B = recirculation_step(A, B, rng.standard_normal((256, 7)), lr if learn_A else 0.0, lr)
    r1 = mp_residuals(A, B)
    for k in r0:
        assert r1[k] < r0[k] / 30, (k, r0[k], r1[k])
    assert rel_error(B, np.linalg.pinv(A)) < 0.03


def test_recirculation_with_decay_reaches_the_ridge_inverse_for_expanding_layers():
    """Expanding A (7×4): the mean flow ΔB = (I − BA)Aᵀ − λB has the fixed point Aᵀ(AAᵀ + λI)⁻¹
    = (AᵀA + λI)⁻¹Aᵀ (→ A⁺ as λ → 0); iterated on the exact flow it is reached to 1e-10.  Without
    decay the part of B on the null space of Aᵀ stays where it started."""
    rng = _rng(10)
    A, B0 = _well_conditioned(rng, 4, 7).T, rng.standard_normal((4, 7))
    lam, B, B_nodecay = 0.05, B0.copy(), B0.copy()
    for _ in range(3000):
        B = B + 0.2 * ((np.eye(4) - B @ A) @ A.T - lam * B)
        B_nodecay = B_nodecay + 0.2 * (np.eye(4) - B_nodecay @ A) @ A.T
    assert rel_error(B, np.linalg.solve(A.T @ A + lam * np.eye(4), A.T)) < 1e-10
    P_null = np.eye(7) - A @ np.linalg.pinv(A)
    assert rel_error(B_nodecay @ P_null, B0 @ P_null) < 1e-10
    assert rel_error(B_nodecay, np.linalg.pinv(A) + B0 @ P_null) < 1e-10


def test_rf_exact_equals_the_closed_form_product_of_pseudoinverses():
    """Linear network: rf-exact's δ_l is (Π_{i>l} W_i⁺) e (poster's RF rule) for every layer, to 1e-12,
    and it equals PBP; with nonlinear units the gate multiplies each step."""
    rng = _rng(11)
    sizes = (9, 7, 5, 3)
    Ws = _weights(sizes, rng)
    x, y = rng.standard_normal((4, 9)), rng.standard_normal((4, 3))
    tr = ["linear"] * 3
    fwd = P.forward(Ws, None, x, tr)
    dL = P.output_signal(P.MSE(), fwd, y, "linear")
    ds = P.teaching_signals(RFExact(), Ws, None, fwd, dL, tr)
    for l in range(3):  # 0-based layer index l ↔ paper layer l+1
        want = rf_closed_form_signal(Ws, dL, l + 1)
        assert np.abs(ds[l] - want).max() / np.abs(want).max() < 1e-12
    ds_pbp = P.teaching_signals(P.PBP(), Ws, None, fwd, dL, tr)
    assert all(np.allclose(a, b, rtol=0, atol=1e-14) for a, b in zip(ds, ds_pbp))
    # learned RF with R = W⁺ is rf-exact
    Rs = [None] + [np.linalg.pinv(W) for W in Ws[1:]]
    ds_rf = P.teaching_signals(RF(), Ws, Rs, fwd, dL, tr)
    assert all(np.allclose(a, b, rtol=0, atol=1e-13) for a, b in zip(ds, ds_rf))


def test_rf_torch_step_equals_the_matrix_reference():
    rule = RF(noise_std=0.7, feedback_lr=2.0, n_noise=5, decay=0.01, forward_recirculation=True, seed=3)
    model = _np_model(rule, sizes=(6, 5, 4, 3))
    rng = _rng(12)
    x, y = torch.tensor(rng.standard_normal((8, 6))), torch.tensor(rng.standard_normal((8, 3)))
    crit, lr = TeachingLoss("mse"), 0.05
    Ws = [w.detach().numpy().copy() for w in model.weights()]
    bs = [b.detach().numpy().copy() for b in model.biases()]
    Rs = [None if r is None else r.detach().numpy().copy() for r in model.feedbacks()]
    BLF.noise_generator(model, seed=2)
    xis = [None if a is None else a.numpy() for a in BLF.draw_rf_noise(model)]
    BLF.noise_generator(model, seed=2)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    crit(model(x), y).backward()  # the network's engine recirculates and sets R.grad (and W.grad)
    opt.step()
    nW, nb, nR = BLF.rf_reference_step(rule, Ws, bs, Rs, x.numpy(), y.numpy(), model.transfers, P.MSE(), lr, xis)
    for l, lin in enumerate(model.linears):
        assert np.abs(lin.weight.detach().numpy() - nW[l]).max() < 1e-12
        if nR[l] is not None:
            assert np.abs(lin.feedback.detach().numpy() - nR[l]).max() < 1e-12


def test_rf_learns_and_its_feedback_approaches_the_pseudoinverse():
    """digits, 64-50-20-10: RF's test loss falls by ≥ 50 % in 5 epochs (measured 2.3 → ≈0.5), W
    changes, and R_l → W_l⁺: the relative distance to W_l⁺ and the Moore–Penrose residuals of the top
    layer fall by ≥ 3× (measured ≈1.0 → 0.1)."""
    cfg = TrainConfig(task="digits", rule="rf", sizes=(64, 50, 20, 10), epochs=5, quiet=True, seed=0,
                      rule_params={"noise_std": 1.0, "feedback_lr": 1.0})
    g = torch.Generator().manual_seed(0)
    m0 = BLF.learned_feedback_metrics(FeedbackMLP((64, 50, 20, 10), "rf", generator=g))
    s = run_experiment(cfg, write=False)
    h = s["history"]
    m1 = BLF.learned_feedback_metrics(s["model"])
    assert h[-1]["test_loss"] < 0.5 * h[0]["test_loss"]
    assert m1["rel_dist_target"][-1] < m0["rel_dist_target"][-1] / 3
    for k in ("mp_axa", "mp_xax", "mp_ax_sym"):
        assert m1[k][-1] < m0[k][-1] / 3, k
    # the signature: RF's teaching signals point along pseudobackprop's, not backprop's
    assert h[-1]["angle_pbp_deg"][-1] < 20.0 < h[-1]["angle_bp_deg"][-1]
    W_start = FeedbackMLP((64, 50, 20, 10), "rf", generator=torch.Generator().manual_seed(0)).weights()[0]
    assert not torch.allclose(s["model"].weights()[0].detach(), W_start, atol=1e-3)


def test_np_direct_mode_builds_output_shaped_feedback_and_trains():
    model = _np_model(NP(mode="direct", c_h=0.05), sizes=(6, 5, 4, 3))
    assert [tuple(r.shape) for r in model.feedbacks() if r is not None] == [(5, 3), (4, 3)]
    rng = _rng(13)
    x, y = torch.tensor(rng.standard_normal((20, 6))), torch.tensor(rng.standard_normal((20, 3)))
    crit = TeachingLoss("mse")
    crit(model(x), y).backward()  # the network's engine does the noisy pass and sets R.grad
    assert all(r.grad is not None and torch.isfinite(r.grad).all() for r in model.feedbacks() if r is not None)
