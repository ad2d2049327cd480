"""bridge/: the torch engine against torch autograd and the plasticity reference (float64)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import plasticity as P
from bridge import FeedbackMLP, TeachingLoss, convert
from bridge.app import TrainConfig, run_experiment
from bridge.layers import Activation
from bridge.metrics import angle_deg

SIZES = (12, 9, 7, 5)


@pytest.fixture(autouse=True)
def float64_default():
    """These cross-checks run in float64; restore the default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(n=16, seed=1, classes=5):
    g = gen(seed)
    return torch.randn(n, SIZES[0], generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def copy_weights(src, dst, feedback_from_weights=False):
    with torch.no_grad():
        for a, b in zip(src.linears, dst.linears):
            b.weight.copy_(a.weight)
            if a.bias is not None:
                b.bias.copy_(a.bias)
            if feedback_from_weights and b.feedback is not None:
                b.feedback.copy_(a.weight.T)


def plain_torch(model: FeedbackMLP, act):
    layers = []
    for i, lin in enumerate(model.linears):
        ref = nn.Linear(lin.in_features, lin.out_features).double()
        with torch.no_grad():
            ref.weight.copy_(lin.weight)
            ref.bias.copy_(lin.bias)
        layers.append(ref)
        if i < len(model.linears) - 1:
            layers.append(act())
    return nn.Sequential(*layers)


@pytest.mark.parametrize("activation, act", [("tanh", nn.Tanh), ("logistic", nn.Sigmoid), ("relu", nn.ReLU)])
@pytest.mark.parametrize("loss", ["ce", "mse", "hinge"])
def test_bp_and_fa_with_transposed_feedback_equal_autograd(activation, act, loss):
    bp = FeedbackMLP(SIZES, "bp", activation=activation, generator=gen(0), dtype=torch.float64)
    fa = FeedbackMLP(SIZES, "fa", activation=activation, generator=gen(1), dtype=torch.float64)
    copy_weights(bp, fa, feedback_from_weights=True)
    ref = plain_torch(bp, act)
    x, y = batch()
    crit = TeachingLoss(loss)
    for m in (bp, fa):
        crit(m(x), y).backward()
    out = ref(x)
    if loss == "ce":
        ref_loss = nn.functional.cross_entropy(out, y)
    elif loss == "mse":
        ref_loss = 0.5 * ((nn.functional.one_hot(y, 5) - out) ** 2).sum(1).mean()
    else:  # eq. 4 written with torch ops (no ties at ±1 in random data)
        t = nn.functional.one_hot(y, 5).double()
        ref_loss = (torch.relu(1 - out) * t + torch.relu(1 + out) * (1 - t)).sum(1).mean()
    ref_loss.backward()
    refs = [m for m in ref if isinstance(m, nn.Linear)]
    for r, a, b in zip(refs, bp.linears, fa.linears):
        # tolerance: float64 round-off of a few products
        torch.testing.assert_close(a.weight.grad, r.weight.grad, rtol=0, atol=1e-13)
        torch.testing.assert_close(b.weight.grad, r.weight.grad, rtol=0, atol=1e-13)
        torch.testing.assert_close(b.bias.grad, r.bias.grad, rtol=0, atol=1e-13)


def sgd_run(model, steps, lr=0.05, seed=3, weight_decay=0.0):
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    crit = TeachingLoss("ce")
    g = gen(seed)
    for _ in range(steps):
        x = torch.randn(8, SIZES[0], generator=g, dtype=torch.float64)
        y = torch.randint(0, 5, (8,), generator=g)
        opt.zero_grad()
        crit(model(x), y).backward()
        opt.step()


def test_urfb_from_transposed_start_stays_backprop_for_100_steps():
    bp = FeedbackMLP(SIZES, "bp", activation="tanh", generator=gen(0), dtype=torch.float64)
    ur = FeedbackMLP(SIZES, P.URFB(epsilon=1.0), activation="tanh", generator=gen(5), dtype=torch.float64)
    copy_weights(bp, ur, feedback_from_weights=True)
    sgd_run(bp, 120, weight_decay=1e-3)
    sgd_run(ur, 120, weight_decay=1e-3)
    for a, b in zip(bp.linears, ur.linears):
        # 120 steps of identical float64 arithmetic up to summation order: 1e-12
        torch.testing.assert_close(b.weight, a.weight, rtol=0, atol=1e-12)
        if b.feedback is not None:
            torch.testing.assert_close(b.feedback, b.weight.T, rtol=0, atol=1e-12)
    start = FeedbackMLP(SIZES, "bp", activation="tanh", generator=gen(0), dtype=torch.float64)
    assert not torch.allclose(bp.linears[0].weight, start.linears[0].weight)  # it did learn


def test_urfb_with_epsilon_zero_equals_fa():
    fa = FeedbackMLP(SIZES, "fa", activation="tanh", generator=gen(0), dtype=torch.float64)
    ur = FeedbackMLP(SIZES, P.URFB(epsilon=0.0), activation="tanh", generator=gen(0), dtype=torch.float64)
    R0 = [None if l.feedback is None else l.feedback.detach().clone() for l in ur.linears]
    sgd_run(fa, 50)
    sgd_run(ur, 50)
    for a, b, r0 in zip(fa.linears, ur.linears, R0):
        torch.testing.assert_close(b.weight, a.weight, rtol=0, atol=0)
        if r0 is not None:
            torch.testing.assert_close(b.feedback.detach(), r0, rtol=0, atol=0)


def _closed_form_feedback(rule, W, R, alpha=1e-3):
    """The matrix that carries δ_l down, written from its definition (numpy, no rule code)."""
    if rule == "bp":
        return W.T
    if rule in ("fa", "urfb", "dfa"):
        return R
    if rule == "pbp":  # full row rank (contracting layers): W⁺ = Wᵀ(WWᵀ)⁻¹
        return W.T @ np.linalg.inv(W @ W.T)
    if rule == "ndi":  # Podlaski eq. 10, contracting: B(WB − αI)⁻¹
        return R @ np.linalg.inv(W @ R - alpha * np.eye(W.shape[0]))
    raise ValueError(rule)


@pytest.mark.parametrize("rule", ["fa", "dfa", "urfb", "pbp", "ndi", "bp"])
def test_engine_signals_equal_closed_form(rule):
    """The torch backward gives ΔW = ⟨δ hᵀ⟩ (and for URFB ΔR = ⟨h δᵀ⟩) with δ carried down by the rule's
    matrix written out in closed form (Wᵀ, R, W⁺ = Wᵀ(WWᵀ)⁻¹, B(WB − αI)⁻¹; DFA from δ_L) in numpy."""
    model = FeedbackMLP(SIZES, rule, activation="tanh", generator=gen(2), dtype=torch.float64)
    x, y = batch()
    TeachingLoss("ce")(model(x), y).backward()
    Ws = [l.weight.detach().numpy() for l in model.linears]
    bs = [l.bias.detach().numpy() for l in model.linears]
    Rs = [None if l.feedback is None else l.feedback.detach().numpy() for l in model.linears]
    X, n = x.numpy(), x.shape[0]
    hs, As = [X], []
    for l, (W, b) in enumerate(zip(Ws, bs)):
        As.append(hs[-1] @ W.T + b)
        hs.append(np.tanh(As[-1]) if l < len(Ws) - 1 else As[-1])
    p = np.exp(hs[-1] - hs[-1].max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    deltas = [None] * len(Ws)
    deltas[-1] = np.eye(SIZES[-1])[y.numpy()] - p  # −∂CE/∂a_L
    for l in range(len(Ws) - 1, 0, -1):
        src = deltas[-1] if rule == "dfa" else deltas[l]
        M = _closed_form_feedback(rule, Ws[l], Rs[l])
        deltas[l - 1] = (1.0 - np.tanh(As[l - 1]) ** 2) * (src @ M.T)
    for l, lin in enumerate(model.linears):
        want = deltas[l].T @ hs[l] / n
        got = -lin.weight.grad.numpy()
        assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max(), (rule, l)
        np.testing.assert_allclose(-lin.bias.grad.numpy(), deltas[l].mean(0), rtol=0, atol=1e-12 * np.abs(want).max())
        if rule == "urfb" and Rs[l] is not None:
            np.testing.assert_allclose(-lin.feedback.grad.numpy(), hs[l].T @ deltas[l] / n, rtol=0,
                                       atol=1e-12 * np.abs(want).max())
    if rule != "bp":  # the lower layers' signal really differs from backprop's (the test sees the operator)
        bp_low = (1.0 - np.tanh(As[0]) ** 2) * ((1.0 - np.tanh(As[1]) ** 2) * (deltas[-1] @ Ws[2]) @ Ws[1])
        assert np.abs(deltas[0] - bp_low).max() > 1e-6 * np.abs(bp_low).max()


def test_satlin_activation_backward_is_eq3_gate_and_hinge_backward_is_eq6():
    a = torch.tensor([[-2.0, -1.0, -0.5, 0.0, 1.0, 1.5, 0.999]], requires_grad=True)
    Activation("satlin")(a).sum().backward()
    torch.testing.assert_close(a.grad, torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]]), rtol=0, atol=0)
    y = torch.tensor([[1.0, -1.0, 0.0], [1.0 + 1e-9, -1.0 - 1e-9, 0.0]], requires_grad=True)
    c = torch.tensor([0, 2])
    TeachingLoss("hinge", mu=0.5)(y, c).backward()
    want = P.Hinge(0.5).teaching(y.detach().numpy(), c.numpy())
    np.testing.assert_array_equal(-y.grad.numpy() * 2, want)  # grad = −δ/n with n = 2
    np.testing.assert_array_equal(want, [[1.0, -0.5, -0.5], [-0.5, 0.0, 1.0]])


@pytest.mark.parametrize("name", ["tanh", "logistic", "relu", "satlin"])
def test_native_activations_have_the_plasticity_gate(name):
    a = torch.randn(50, generator=gen(9)) * 3
    a[:4] = torch.tensor([-1.0, 1.0, 0.0, -0.0])  # the gate's edges
    a.requires_grad_(True)
    Activation(name)(a).sum().backward()
    torch.testing.assert_close(a.grad, P.get_transfer(name).gate(a.detach()), rtol=0, atol=1e-15)


def test_native_cross_entropy_gradient_is_the_teaching_signal():
    y = torch.randn(6, 4, generator=gen(4), requires_grad=True)
    t = torch.randint(0, 4, (6,), generator=gen(4))
    TeachingLoss("ce")(y, t).backward()
    torch.testing.assert_close(-y.grad * 6, P.CrossEntropy().teaching(y.detach(), t), rtol=0, atol=1e-15)


def test_sparse_connectivity_stays_sparse_and_feedback_is_buffer_or_parameter():
    m = FeedbackMLP(SIZES, "urfb", activation="tanh", sparsity=0.5, feedback_sparsity=0.5, generator=gen(0))
    zeros_W = [(l.weight == 0) for l in m.linears]
    zeros_R = [None if l.feedback is None else (l.feedback == 0) for l in m.linears]
    assert abs(float(zeros_W[0].double().mean()) - 0.5) < 0.01
    sgd_run(m, 30, weight_decay=1e-2)
    for l, zw, zr in zip(m.linears, zeros_W, zeros_R):
        assert bool((l.weight[zw] == 0).all())
        assert (l.weight[~zw] != 0).all()
        if zr is not None:
            assert bool((l.feedback[zr] == 0).all())
    fa = FeedbackMLP(SIZES, "fa", generator=gen(0))
    assert "feedback" in dict(fa.linears[1].named_buffers())
    assert "feedback" in dict(m.linears[1].named_parameters())
    assert fa.linears[0].feedback is None  # nothing reads the input layer's feedback


def test_convert_existing_model():
    ref = nn.Sequential(nn.Linear(12, 9), nn.Tanh(), nn.Linear(9, 5)).double()
    x, y = batch()
    bp = convert(ref, "bp", example_input=x, generator=gen(0))
    fa = convert(ref, "fa", example_input=x, generator=gen(0))
    for m in (ref, bp, fa):
        nn.functional.cross_entropy(m(x), y).backward()
    torch.testing.assert_close(bp[0].weight.grad, ref[0].weight.grad, rtol=0, atol=1e-14)
    # FA's hidden update uses R: it differs from BP's but the output layer's is the same
    torch.testing.assert_close(fa[2].weight.grad, ref[2].weight.grad, rtol=0, atol=1e-14)
    assert not torch.allclose(fa[0].weight.grad, ref[0].weight.grad)
    assert ref[0].weight.grad is not None and isinstance(ref[0], nn.Linear)  # original untouched


def test_fa_learns_lillicrap_task1_and_aligns():
    """Lillicrap Fig. 1: NSE falls ≥ 100×, weights change, Δh angle to BP drops below 90°."""
    s = run_experiment(TrainConfig(task="lillicrap-linear", rule="fa", epochs=4, quiet=True,
                                   evals_per_epoch=2, dtype="float64"), write=False)
    h = s["history"]
    assert h[-1]["test_nse"] <= h[0]["test_nse"] / 100
    model = s["model"]
    init = FeedbackMLP((30, 20, 10), "fa", activation="linear", output_activation="linear", bias=False,
                       weight_scale=0.01, feedback_scale=0.5, generator=gen(0), dtype=torch.float64)
    assert all((a.weight - b.weight).abs().max() > 1e-2 for a, b in zip(model.linears, init.linears))
    assert h[-1]["angle_bp_deg"][0] < 90.0


def test_fa_angle_decreases_on_lillicrap_task1():
    s = run_experiment(TrainConfig(task="lillicrap-linear", rule="fa", epochs=2, quiet=True, evals_per_epoch=4),
                       write=False)
    angles = [r["angle_bp_deg"][0] for r in s["history"]]
    assert angles[0] > 80 and min(angles[1:]) < 60


def test_angle_helper():
    assert angle_deg(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == pytest.approx(90.0)
    assert angle_deg(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0])) == pytest.approx(0.0, abs=1e-6)


def test_results_folder(tmp_path):
    out = tmp_path / "r"
    run_experiment(TrainConfig(task="digits", rule="urfb", epochs=1, quiet=True, out=str(out), n_train=200))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rule"] == "urfb" and summary["task"] == "digits" and summary["seed"] == 0
    for k in ("train_loss", "test_loss", "test_error", "angle_bp_deg", "seconds"):
        assert k in summary["final"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "test_loss" in json.loads(lines[-1])
    assert json.loads((out / "config.json").read_text())["sizes"] == [64, 100, 10]
    assert (out / "figures" / "loss.png").stat().st_size > 1000


def test_bad_config_errors_are_clear():
    with pytest.raises(ValueError, match="sizes 30-20-10 do not fit task 'digits'"):
        run_experiment(TrainConfig(task="digits", sizes=(30, 20, 10), quiet=True), write=False)
    with pytest.raises(ValueError, match=r"lr must lie in \(0, inf\)"):
        TrainConfig(lr=-1).resolved()
    with pytest.raises(ValueError, match="unknown task 'cifar'"):
        TrainConfig(task="cifar").resolved()
