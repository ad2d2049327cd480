"""Dynamic inversion (Podlaski & Machens 2020): the rule spec, its dynamics against mathematics,
stability/SSA, and DI training in the torch engine."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from plasticity import NDI, make_rule
from plasticity.inversion import (
    DI,
    Around,
    StabilityError,
    euler_step,
    loop_feedback,
    loop_matrix,
    simulate,
    simulate_loop,
    simulate_repeat,
    spectral_abscissa,
    ssa,
    stability,
    stabilize,
    stabilize_loop,
    steady_state,
    steady_state_loop,
    system_matrix,
)


def _mats(d_l=6, d_p=9, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    W = rng.uniform(-scale, scale, (d_l, d_p))
    return W, -W.T.copy(), rng


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# ------------------------------------------------------------------------------ Algorithm 1 step
@pytest.mark.parametrize("g", ["linear", "tanh"])
def test_euler_step_is_algorithm_1_by_hand(g):
    W, B, rng = _mats()
    alpha, dt = 0.2, 0.1
    t, d0, u0 = rng.normal(size=6), rng.normal(size=9), rng.normal(size=6)
    f = np.tanh if g == "tanh" else (lambda x: x)
    # the pseudocode, column vectors, one line after the other
    d1 = d0 + dt * (-d0 + B @ u0)
    u1 = u0 + dt * (-alpha * u0 + W @ f(d1) - t)
    d, u = euler_step(W, B, t[None], d0[None], u0[None], g, alpha, dt)
    assert _rel(d[0], d1) < 1e-14 and _rel(u[0], u1) < 1e-14
    dt_, ut_ = euler_step(torch.tensor(W), torch.tensor(B), torch.tensor(t[None]), torch.tensor(d0[None]),
                          torch.tensor(u0[None]), g, alpha, dt)
    assert _rel(dt_.numpy()[0], d1) < 1e-14 and _rel(ut_.numpy()[0], u1) < 1e-14


# ------------------------------------------------------------------------------ fixed points
@pytest.mark.parametrize("shape", [(6, 9), (9, 9), (9, 6)])
@pytest.mark.parametrize("architecture", ["controller", "expanding"])
def test_linear_steady_state_is_ndi_closed_form(shape, architecture):
    W, B, rng = _mats(*shape)
    t = rng.normal(size=(4, shape[0]))
    alpha = 0.1
    ref = t @ NDI(alpha=alpha).operator(W, B).T  # eq. 10
    # independent evaluation of eq. 10: B(WB − αI)⁻¹ δ
    ref2 = (B @ np.linalg.solve(W @ B - alpha * np.eye(shape[0]), t.T)).T
    assert _rel(ref, ref2) < 1e-9
    ss = steady_state(W, B, t, "linear", alpha, architecture=architecture)
    assert _rel(ss, ref) < 1e-6
    sol = simulate(W, B, t, "linear", alpha, 0.1, 1e-12, 50000, architecture=architecture)
    assert sol.converged and _rel(sol.delta, ref) < 1e-6
    sst = steady_state(torch.tensor(W), torch.tensor(B), torch.tensor(t), "linear", alpha, architecture=architecture)
    assert _rel(sst.numpy(), ref) < 1e-9


@pytest.mark.parametrize("architecture", ["controller", "expanding"])
def test_tanh_euler_converges_to_newton_steady_state(architecture):
    W, B, rng = _mats()
    t = 0.3 * rng.normal(size=(5, 6))
    ss = steady_state(torch.tensor(W), torch.tensor(B), torch.tensor(t), "tanh", 0.1, architecture=architecture)
    # eq. 15: W g(δ_{l−1}) = δ_l + α u with u = ... ; for the controller δ = B u
    sol = simulate(torch.tensor(W), torch.tensor(B), torch.tensor(t), "tanh", 0.1, 0.1, 1e-12, 50000,
                   architecture=architecture)
    assert sol.converged
    assert _rel(sol.delta.numpy(), ss.numpy()) < 1e-8
    if architecture == "controller":
        u = sol.u.numpy()
        assert _rel(np.tanh(ss.numpy()) @ W.T, t + 0.1 * u) < 1e-8


@pytest.mark.parametrize("architecture", ["controller", "expanding"])
@pytest.mark.parametrize("g", ["linear", "tanh"])
def test_subspace_euler_has_algorithm_1_iterates(architecture, g):
    """δ = B c from δ(0) = 0: the subspace form gives Algorithm 1's trajectory and stop step."""
    W, B, rng = _mats(d_l=4, d_p=11, seed=5)
    t = 0.4 * rng.normal(size=(3, 4))
    args = (torch.tensor(W), torch.tensor(B), torch.tensor(t), g, 0.1, 0.2, 1e-9, 20000)
    full = simulate(*args, architecture=architecture, record=True, subspace=False)
    sub = simulate(*args, architecture=architecture, record=True, subspace=True)
    assert full.converged and sub.converged and sub.steps == full.steps
    # float64, rounding only: 1e-12 relative over the whole trajectory
    for name in full.trajectory:
        assert _rel(sub.trajectory[name].numpy(), full.trajectory[name].numpy()) < 1e-12, name
    assert _rel(sub.delta.numpy(), full.delta.numpy()) < 1e-12


def test_newton_steady_state_backtracks_per_example():
    """A batch whose examples need different Newton damping: each example finds its own fixed
    point (a batch-wide step rule stalls here), equal to the converged Euler state."""
    rng = np.random.default_rng(2)
    W0 = rng.uniform(-0.1, 0.1, (5, 100))
    W = W0 + rng.normal(0, 0.1, (5, 100))  # forward weights drifted away from Tr-Init
    t = rng.normal(size=(32, 5)) * rng.uniform(0.05, 0.6, size=(32, 1))
    Wt, Bt, tt = torch.tensor(W), torch.tensor(-W0.T), torch.tensor(t)
    ss = steady_state(Wt, Bt, tt, "tanh", 1e-3)
    sol = simulate(Wt, Bt, tt, "tanh", 1e-3, 0.5, 1e-11, 100000)
    assert sol.converged
    assert _rel(ss.numpy(), sol.delta.numpy()) < 1e-8  # Euler stopped at a 1e-11 relative change
    one = np.concatenate([steady_state(Wt, Bt, tt[i:i + 1], "tanh", 1e-3).numpy() for i in range(32)])
    assert _rel(ss.numpy(), one) < 1e-10


@pytest.mark.parametrize("case", ["controller", "expanding", "single-loop"])
def test_chord_then_newton_equals_newton_only(case):
    """The chord phase (steps with the batch's one J(0)) changes the path, not the fixed point:
    on a batch mixing small errors (chord converges) and large ones (chord hands over to
    Newton) both solvers agree to 1e-10 (float64, both stop at residual ≤ 1e-12)."""
    rng = np.random.default_rng(4)
    scale = rng.uniform(0.01, 1.5, size=(40, 1))
    if case == "single-loop":
        W2, W3 = rng.uniform(-.5, .5, (7, 9)), rng.uniform(-.5, .5, (5, 7))
        B, _ = stabilize_loop([W2, W3], loop_feedback([None, -W2.T, -W3.T]), 0.1)
        t = scale * rng.normal(size=(40, 5))
        a = steady_state_loop([W2, W3], B, t, ["tanh", "tanh"], 0.1)
        b = steady_state_loop([W2, W3], B, t, ["tanh", "tanh"], 0.1, chord_iter=0)
        assert all(_rel(x, y) < 1e-10 for x, y in zip(a, b))
        return
    arch = "controller" if case == "controller" else "expanding"
    W, B, t = _mats(6, 9, 5)
    t = scale * rng.normal(size=(40, 6))
    a = steady_state(W, B, t, "tanh", 0.1, architecture=arch)
    b = steady_state(W, B, t, "tanh", 0.1, architecture=arch, chord_iter=0)
    assert _rel(a, b) < 1e-10
    # and both are the fixed point of the dynamics
    sol = simulate(W, B, t, "tanh", 0.1, 0.5, 1e-13, 200000, architecture=arch)
    assert sol.converged and _rel(a, sol.delta) < 1e-9


def test_float32_steady_state_matches_float64():
    """float32 cannot reach the 1e-12 residual: the bound adds 16 ulp of ‖δ_l‖ per example, and
    the result agrees with float64 to float32 accuracy (≤ 1e-5 relative: 16 ulp ≈ 2e-6 of
    residual times κ(J) ≈ 1.6 here, with room for the rounding of the 300-term sums)."""
    rng = np.random.default_rng(5)
    W = rng.uniform(-1, 1, (10, 300)) / np.sqrt(300)
    t = rng.normal(size=(64, 10)) * rng.uniform(0.02, 1.0, size=(64, 1))
    d64 = steady_state(torch.tensor(W), torch.tensor(-W.T), torch.tensor(t), "tanh", 1e-3)
    d32 = steady_state(torch.tensor(W, dtype=torch.float32), torch.tensor(-W.T, dtype=torch.float32),
                       torch.tensor(t, dtype=torch.float32), "tanh", 1e-3)
    assert d32.dtype == torch.float32
    assert _rel(d32.double().numpy(), d64.numpy()) < 1e-5


def test_chains_repeat_and_single_loop():
    rng = np.random.default_rng(3)
    W2, W3 = rng.uniform(-.5, .5, (7, 9)), rng.uniform(-.5, .5, (5, 7))
    t = 0.3 * rng.normal(size=(3, 5))
    gs = ["tanh", "tanh"]
    # repeat layer (Alg. 2) has the sequential fixed point
    d2 = steady_state(W3, -W3.T, t, "tanh", 0.1)
    d1 = steady_state(W2, -W2.T, d2, "tanh", 0.1)
    rep = simulate_repeat([W2, W3], [-W2.T, -W3.T], t, gs, 0.1, 0.1, 1e-12, 50000)
    assert rep.converged and _rel(rep.deltas[1], d2) < 1e-8 and _rel(rep.deltas[0], d1) < 1e-8
    # single loop (Alg. 3): stabilise the loop's B by SSA, then Euler → Newton fixed point
    B0 = loop_feedback([None, -W2.T, -W3.T])
    assert np.allclose(B0, -(W3 @ W2).T)
    B, info = stabilize_loop([W2, W3], B0, 0.1)
    assert spectral_abscissa(loop_matrix([W2, W3], B, 0.1)) < 0
    xs = steady_state_loop([W2, W3], B, t, gs, 0.1)
    sol = simulate_loop([W2, W3], B, t, gs, 0.1, 0.1, 1e-12, 100000)
    assert sol.converged and all(_rel(a, b) < 1e-7 for a, b in zip(sol.deltas, xs))


# ------------------------------------------------------------------------------ against expm, order 1
def _expm_solution(W, B, t, alpha, T):
    """Exact solution at time T of the linear system x' = S9 x + c, x(0) = 0 (augmented expm)."""
    A = system_matrix(W, B, alpha)
    n = A.shape[0]
    c = np.concatenate([np.zeros(W.shape[1]), -t])
    Aug = np.zeros((n + 1, n + 1))
    Aug[:n, :n], Aug[:n, n] = A, c
    return (scipy.linalg.expm(Aug * T)[:n, n])


def test_linear_dynamics_match_expm_and_euler_is_order_one():
    W, B, rng = _mats(4, 6, seed=1)
    t = rng.normal(size=4)
    alpha, T = 0.3, 2.0
    exact = _expm_solution(W, B, t, alpha, T)
    dts = [0.04, 0.02, 0.01, 0.005]
    errs = []
    for dt in dts:
        sol = simulate(W, B, t[None], "linear", alpha, dt, 0.0, int(round(T / dt)))
        x = np.concatenate([sol.delta[0], sol.u[0]])
        errs.append(np.abs(x - exact).max() / np.abs(exact).max())
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert abs(slope - 1.0) < 0.1, (slope, errs)
    assert errs[-1] < 0.02  # O(dt): the dynamics are those of S9


# ------------------------------------------------------------------------------ stability / SSA
def test_stability_reduced_equals_block_eigenvalues():
    rng = np.random.default_rng(5)
    for (d_l, d_p) in [(4, 7), (7, 4), (5, 5)]:
        for arch in ["controller", "expanding"]:
            W, B = rng.normal(size=(d_l, d_p)), rng.normal(size=(d_p, d_l))
            for alpha in [0.0, 0.3]:
                full = spectral_abscissa(system_matrix(W, B, alpha, arch))
                assert abs(stability(W, B, alpha, architecture=arch) - full) < 1e-9


def test_tr_init_stable_and_ssa_stabilises_random_feedback():
    W, B, rng = _mats(6, 9)
    assert stability(W, B, 1e-3) < 0  # Tr-Init: WB = −WWᵀ ≤ 0
    R = rng.uniform(-0.5, 0.5, (9, 6))
    lam0 = stability(W, R, 0.1)
    assert lam0 > 0
    Bn, info = stabilize(W, R, 0.1)
    assert info["lambda_before"] > 0 and stability(W, Bn, 0.1) <= -0.01
    t = rng.normal(size=(2, 6))
    sol = simulate(W, Bn, t, "linear", 0.1, 0.1, 1e-12, 200000)
    assert sol.converged and _rel(sol.delta, steady_state(W, Bn, t, "linear", 0.1)) < 1e-6
    with pytest.raises(StabilityError):
        stabilize(W, R, 0.1, max_iter=1, lr=1e-6)
    with pytest.raises(StabilityError):
        simulate(W, R, t, "linear", 0.1, 0.5, 1e-12, 100000)  # unstable B diverges, loudly


def test_reduced_ssa_gradient_and_stabilisation():
    """SSA on the subspace system [[−I, I], [WB, −αI]] (2d_l wide): its B-gradient Wᵀ ∂s̃/∂(WB)
    matches central differences of s̃ (2 %: s̃ is found by bisection to 1e-6, h = 1e-2), and the
    descent makes the full S9 stable, as the full-matrix descent does."""
    rng = np.random.default_rng(1)
    W = rng.uniform(-1, 1, (4, 30)) / np.sqrt(30)
    B = rng.uniform(-1, 1, (30, 4)) / 2
    I = np.eye(4)
    _, G = ssa(system_matrix(W @ B, I, 0.1))
    gB = W.T @ G[4:, :4]
    for _ in range(3):
        E = rng.normal(size=B.shape)
        E /= np.linalg.norm(E)
        fd = (ssa(system_matrix(W @ (B + 1e-2 * E), I, 0.1))[0] - ssa(system_matrix(W @ (B - 1e-2 * E), I, 0.1))[0]) / 2e-2
        assert abs(fd - (gB * E).sum()) <= 0.02 * abs(fd) + 1e-5, (fd, (gB * E).sum())
    W, _, rng = _mats(6, 40, 2)
    R = rng.uniform(-0.5, 0.5, (40, 6))
    assert stability(W, R, 0.1) > 0
    for reduced in (True, False):
        Bn, info = stabilize(W, R, 0.1, reduced=reduced)
        assert info["lambda_before"] > 0
        assert spectral_abscissa(system_matrix(W, Bn, 0.1)) <= -0.01


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("kw, word", [
    (dict(alpha=-0.1), "alpha"), (dict(dt=0.0), "dt"), (dict(dt=1.5), "dt"), (dict(chain="zigzag"), "chain"),
    (dict(architecture="x"), "architecture"), (dict(method="rk4"), "method"), (dict(init="zeros"), "init"),
    (dict(tol=0.0), "tol"), (dict(max_steps=0), "max_steps"), (dict(max_norm=0.0), "max_norm"),
    (dict(transfer="sine"), "activation"), (dict(chain="single-loop", architecture="expanding"), "single-loop"),
    (dict(around="input"), "around"),
])
def test_out_of_range_parameters_raise(kw, word):
    with pytest.raises(ValueError, match=word):
        DI(**kw)


def test_rule_registered_and_shapes_checked():
    with pytest.raises(ValueError, match="no parameter 'epsilon'"):
        make_rule("di", alpha=0.05, epsilon=1.0)
    r = make_rule("di", alpha=0.05)
    assert isinstance(r, DI) and r.alpha == 0.05 and r.gated is False
    W, B, rng = _mats(9, 6)
    with pytest.raises(ValueError, match="expanding"):
        simulate(W, B, rng.normal(size=(1, 9)), "linear", 0.0)


def test_propagate_sign_and_linear_operator():
    W, B, rng = _mats()
    d = rng.normal(size=(3, 6))
    r = DI(alpha=0.1, method="steady", transfer="tanh")
    # package sign: δ_{l−1} = −DI(−δ_l); tanh is odd so it equals DI(δ_l)
    assert _rel(r.propagate(W, B, d), steady_state(W, B, d, "tanh", 0.1)) < 1e-9
    assert _rel(DI(alpha=0.1).propagate(W, B, d), d @ NDI(alpha=0.1).operator(W, B).T) < 1e-12


# ------------------------------------------------------------------------------ training (torch)
def _train(task, rp, *, n_train, epochs, batch, lr):
    import bridge.inversion as bi
    from bridge.app.runs import TrainConfig, build_model
    from bridge.data import load_dataset
    from bridge.losses import TeachingLoss
    from bridge.train import train

    cfg = TrainConfig(task=task, rule="di", rule_params=rp, epochs=epochs, n_train=n_train, n_test=200,
                      batch_size=batch, quiet=True, dtype="float64", lr=lr, probe_size=64).resolved()
    data = load_dataset(task, seed=0, n_train=n_train, n_test=200)
    model = build_model(cfg, data.n_in, data.n_out)
    bi.prepare(model)
    W0 = [w.detach().clone() for w in model.weights()]
    hist = train(model, data, TeachingLoss(cfg.loss), cfg)
    return model, data, W0, hist


def test_di_learns_linear_regression_and_follows_ndi():
    import bridge.inversion as bi
    from bridge.losses import TeachingLoss

    model, data, W0, hist = _train("lillicrap-linear", dict(method="steady", max_norm=10.0),
                                   n_train=200, epochs=3, batch=1, lr=0.01)
    assert hist[-1]["test_nse"] < hist[0]["test_nse"] / 20  # NSE falls ≥ 20×
    assert all(not torch.allclose(w, w0) for w, w0 in zip(model.weights(), W0))
    assert len(model.di_state.stability) == 600
    x, y = torch.tensor(data.x_test[:64]), torch.tensor(data.y_test[:64])
    ang = bi.di_angles(model, x, y, TeachingLoss("mse"))
    assert ang["angle_ndi_deg"][0] < 1.0  # linear: DI's fixed point is NDI's eq. 10 (cap aside)


@pytest.mark.filterwarnings("ignore:DI did not converge:RuntimeWarning")
def test_di_learns_nonlinear_regression_with_euler_dynamics():
    # O(1) targets through tanh: some examples have no fixed point (their target lies beyond what
    # W tanh(·) reaches); Algorithm 1 then stops at max_steps and the §7.5.1 cap ‖δ‖ ≤ 1 applies
    model, data, W0, hist = _train("lillicrap-nonlinear",
                                   dict(method="euler", max_norm=1.0, dt=0.5, tol=1e-5, max_steps=1500),
                                   n_train=300, epochs=2, batch=20, lr=0.05)
    assert hist[-1]["test_nse"] < 0.7 * hist[0]["test_nse"]
    assert all(not torch.allclose(w, w0) for w, w0 in zip(model.weights(), W0))
    assert max(max(r["max_eig"]) for r in model.di_state.stability) < 0


@pytest.mark.parametrize("init", ["tr", "random"])
def test_single_loop_training_in_the_engine(init):
    """Algorithm 3 through the engine on 4-6-5-3: prepare (Tr-Init, or R-Init made stable by SSA on
    the loop's B), stable loop, gradients −⟨δ hᵀ⟩ from the single-loop signals."""
    import bridge.inversion as bi
    from bridge.losses import TeachingLoss
    from bridge.network import FeedbackMLP
    from plasticity import forward, output_signal

    g = torch.Generator().manual_seed(1)
    rule = DI(alpha=0.1, method="steady", chain="single-loop", init=init)
    model = FeedbackMLP((4, 6, 5, 3), rule, activation="tanh", generator=g, dtype=torch.float64)
    st = bi.prepare(model)
    assert st is model.di_state
    assert bi.di_stability(model)[0] < 0
    if init == "tr":
        assert torch.equal(model.linears[2].feedback, -model.linears[2].weight.detach().T)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64) * 0.3
    loss = TeachingLoss("mse")
    loss(model(x), y).backward()
    Ws = [w.detach() for w in model.weights()]
    fwd = forward(Ws, [b.detach() for b in model.biases()], x, model.transfers)
    B = loop_feedback([None if r is None else r.detach() for r in model.feedbacks()])
    xs = steady_state_loop(Ws[1:], B, -output_signal(loss.loss, fwd, y, "linear"), model.transfers[:-1], 0.1)
    for l in range(2):
        assert _rel(model.linears[l].weight.grad, (xs[l].T @ fwd.hs[l]) / 5) < 1e-10  # package sign: δ = −paper δ
    assert st.step == 1 and len(st.stability) == 1


def test_di_small_errors_follow_the_ungated_linear_inversion_not_ndi():
    """Eq. 14 puts g on δ, not on the forward activity: for small errors DI's fixed point is eq. 10's
    operator *without* NDI's g'(a) gate.  With saturated hidden units the gate turns NDI away."""
    import bridge.inversion as bi
    from bridge.losses import TeachingLoss
    from bridge.network import FeedbackMLP

    g = torch.Generator().manual_seed(0)
    rule = DI(alpha=0.01, method="steady")
    model = FeedbackMLP((6, 12, 4), rule, activation="tanh", generator=g, dtype=torch.float64)
    with torch.no_grad():
        model.linears[0].weight.mul_(40.0)  # hidden pre-activations of order several: g'(a) far from 1
    bi.prepare(model)
    x = torch.randn(16, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x) + 1e-4 * torch.randn(16, 4, generator=g, dtype=torch.float64)  # tiny output errors
    ang = bi.di_angles(model, x, y, TeachingLoss("mse"))
    assert ang["angle_ndi_ungated_deg"][0] < 0.1
    assert ang["angle_ndi_deg"][0] > 20.0


def test_around_activity_fixed_point_carries_the_gate():
    """g around the forward pre-activation a (not in the paper): linear g is unchanged; for small
    errors the fixed point is B(W D B − αI)⁻¹ δ_l per example, D = diag(g'(a)), to first order in
    the error; Euler (Algorithm 1 with g around a) and the solver (per-example J(0) chord, then
    Newton) agree, float64."""
    rng = np.random.default_rng(6)
    W, B, _ = _mats(5, 12, 6)
    a = 2.0 * rng.normal(size=(20, 12))  # many units near saturation: g'(a) far from 1
    t = rng.normal(size=(20, 5))
    assert _rel(steady_state(W, B, t, Around("linear", a), 0.1), steady_state(W, B, t, "linear", 0.1)) < 1e-12
    D = 1.0 - np.tanh(a) ** 2
    errs = []
    for eps in (1e-3, 1e-5):
        d = steady_state(W, B, eps * t, Around("tanh", a), 0.1)
        ref = np.stack([B @ np.linalg.solve(W @ (D[i][:, None] * B) - 0.1 * np.eye(5), eps * t[i]) for i in range(20)])
        errs.append(_rel(d, ref))
    assert errs[1] < 1e-4 and errs[1] < errs[0] / 50, errs  # O(ε): 100× smaller ε, ≥ 50× smaller error
    ungated = steady_state(W, B, 1e-5 * t, "tanh", 0.1)
    assert _rel(ungated, ref) > 0.1  # eq. 14 as printed misses D
    tt = 0.3 * t
    ss = steady_state(W, B, tt, Around("tanh", a), 0.1)
    assert _rel(ss, steady_state(W, B, tt, Around("tanh", a), 0.1, chord_iter=0)) < 1e-10
    sol = simulate(W, B, tt, Around("tanh", a), 0.1, 0.5, 1e-13, 200000)
    assert sol.converged and _rel(ss, sol.delta) < 1e-9
    # package sign: W[g(a + δ_{l−1}) − g(a)] = δ_l + α u at the fixed point (δ = −paper δ)
    u = np.linalg.lstsq(B, ss.T, rcond=None)[0].T
    assert _rel((np.tanh(a - ss) - np.tanh(a)) @ W.T, -(tt + 0.1 * u)) < 1e-10


def test_around_activity_in_the_engine():
    """DI(around="activity") through the engine: each hidden layer's g is taken around its own
    forward pre-activation."""
    import bridge.inversion as bi
    from bridge.losses import TeachingLoss
    from bridge.network import FeedbackMLP
    from plasticity import forward, output_signal

    g = torch.Generator().manual_seed(0)
    rule = DI(alpha=0.01, method="steady", around="activity")
    model = FeedbackMLP((6, 12, 4), rule, activation="tanh", generator=g, dtype=torch.float64)
    with torch.no_grad():
        model.linears[0].weight.mul_(40.0)
    bi.prepare(model)
    x = torch.randn(16, 6, generator=g, dtype=torch.float64)
    y = torch.randn(16, 4, generator=g, dtype=torch.float64) * 0.3
    loss = TeachingLoss("mse")
    loss(model(x), y).backward()
    Ws = [w.detach() for w in model.weights()]
    fwd = forward(Ws, [b.detach() for b in model.biases()], x, model.transfers)
    tgt = -output_signal(loss.loss, fwd, y, "linear")
    d1 = steady_state(Ws[1], model.linears[1].feedback.detach(), tgt, Around("tanh", fwd.As[0]), 0.01)
    assert _rel(model.linears[0].weight.grad, (d1.T @ fwd.hs[0]) / 16) < 1e-10
    plain = steady_state(Ws[1], model.linears[1].feedback.detach(), tgt, "tanh", 0.01)
    assert _rel(d1, plain) > 0.1  # saturated units: the operating point matters


def test_backward_sets_di_gradients():
    """The gradients the engine hands the optimizer are −⟨δ_DI hᵀ⟩ with δ_DI from the rule."""
    import bridge.inversion as bi
    from bridge.losses import TeachingLoss
    from bridge.network import FeedbackMLP
    from plasticity import forward, output_signal

    g = torch.Generator().manual_seed(0)
    rule = DI(alpha=0.1, method="euler", tol=1e-10, dt=0.5, max_steps=20000)
    model = FeedbackMLP((8, 6, 5, 4), rule, activation="tanh", generator=g, dtype=torch.float64)
    bi.prepare(model)
    x = torch.randn(7, 8, generator=g, dtype=torch.float64)
    y = torch.randn(7, 4, generator=g, dtype=torch.float64) * 0.3
    loss = TeachingLoss("mse")
    loss(model(x), y).backward()
    Ws = [w.detach() for w in model.weights()]
    fwd = forward(Ws, [b.detach() for b in model.biases()], x, model.transfers)
    dL = output_signal(loss.loss, fwd, y, "linear")
    Rs = [None if r is None else r.detach() for r in model.feedbacks()]
    deltas = rule.reference_signals(Ws, Rs, fwd, dL, model.transfers)
    for l in range(3):
        assert _rel(model.linears[l].weight.grad, -(deltas[l].T @ fwd.hs[l]) / 7) < 1e-10
        assert _rel(model.linears[l].bias.grad, -deltas[l].mean(0)) < 1e-10
    # Tr-Init happened: R_l = −W_l(0)ᵀ
    assert torch.equal(model.linears[2].feedback, -model.linears[2].weight.detach().T)


def test_gated_variant_converges_to_gated_ndi_and_cap_chain_orders_differ():
    """around='gated' (linear controller, then g'(a) of the forward pass — the authors' later code):
    its fixed point is NDI's gated operator (eq. 10 with the g'(a) gate), float64 ≤ 1e-9; eq. 14's DI
    is not.  cap_chain: 'uncapped' inverts the uncapped δ down the chain and caps only each teaching
    signal — the top hidden layer's signal is the same either way, the lower ones differ."""
    from plasticity import MSE, forward, output_signal, teaching_signals

    rng = np.random.default_rng(3)
    sizes = (6, 9, 8, 4)
    Ws = [rng.normal(size=(sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]) for i in range(3)]
    Rs = [None] + [-W.T for W in Ws[1:]]
    x, y = rng.normal(size=(7, 6)), 0.5 * rng.normal(size=(7, 4))
    tr = ["tanh", "tanh", "linear"]
    fwd = forward(Ws, None, x, tr)
    dL = output_signal(MSE(), fwd, y, "linear")
    gated = DI(alpha=0.1, method="steady", around="gated").reference_signals(Ws, Rs, fwd, dL, tr)
    ndi = teaching_signals(NDI(alpha=0.1), Ws, Rs, fwd, dL, tr)
    plain = DI(alpha=0.1, method="steady").reference_signals(Ws, Rs, fwd, dL, tr)
    for a, b, c in zip(gated[:-1], ndi[:-1], plain[:-1]):
        assert _rel(a, b) < 1e-9 and _rel(c, b) > 1e-3
    capped = DI(alpha=0.1, method="steady", max_norm=0.05).reference_signals(Ws, Rs, fwd, dL, tr)
    unc = DI(alpha=0.1, method="steady", max_norm=0.05, cap_chain="uncapped").reference_signals(Ws, Rs, fwd, dL, tr)
    assert _rel(capped[1], unc[1]) < 1e-12 and _rel(capped[0], unc[0]) > 1e-3
    assert max(np.linalg.norm(d, axis=1).max() for d in unc[:-1]) <= 0.05 * (1 + 1e-12)
    with pytest.raises(ValueError, match="sequential"):
        DI(around="gated", chain="single-loop")
