"""plasticity/: the rules against mathematics (float64, tolerances stated per test)."""

import sys

import numpy as np
import pytest

import plasticity as P
from plasticity._validate import check_chain, parse_sizes

RNG = np.random.default_rng(1234)


def test_plasticity_imports_neither_torch_nor_brian2():
    import subprocess

    code = "import sys, plasticity; print(any(m in sys.modules for m in ('torch', 'brian2')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _eq6(y, c, mu):
    """Eq. 6 written out case by case."""
    out = np.zeros_like(y)
    for n in range(y.shape[0]):
        for i in range(y.shape[1]):
            if i == c[n] and y[n, i] <= 1:
                out[n, i] = 1.0
            elif i != c[n] and y[n, i] >= -1:
                out[n, i] = -mu
    return out


@pytest.mark.parametrize("mu", [1.0, 0.3])
def test_hinge_signal_equals_eq6_on_both_sides_of_every_threshold(mu):
    eps = 1e-12
    values = np.array([-3, -1 - eps, -1.0, -1 + eps, 0.0, 1 - eps, 1.0, 1 + eps, 3.0])
    y = np.repeat(values[:, None], 4, axis=1)  # every value for the right and the wrong classes
    c = np.zeros(len(values), dtype=int)
    got = P.Hinge(mu).teaching(y, c)
    np.testing.assert_array_equal(got, _eq6(y, c, mu))  # exact: eq. 6 is piecewise constant
    # and the value (eq. 4) at a few points
    L = P.Hinge(mu).value(np.array([[0.5, 0.2, -2.0]]), np.array([0]))
    assert L[0] == pytest.approx(0.5 + mu * 1.2, abs=1e-15)


def test_hinge_signal_is_minus_gradient_away_from_kinks():
    mu, h = 0.7, 1e-6
    y = RNG.uniform(-3, 3, size=(20, 5))
    y = y[np.all(np.abs(np.abs(y) - 1) > 1e-3, axis=1)]
    c = RNG.integers(0, 5, size=len(y))
    loss = P.Hinge(mu)
    num = np.zeros_like(y)
    for k in range(y.shape[1]):
        d = np.zeros_like(y)
        d[:, k] = h
        num[:, k] = (loss.value(y + d, c) - loss.value(y - d, c)) / (2 * h)
    np.testing.assert_allclose(loss.teaching(y, c), -num, atol=1e-8)


@pytest.mark.parametrize("name", ["mse", "ce"])
def test_losses_teaching_is_minus_gradient(name):
    loss, h = P.get_loss(name), 1e-6
    y = RNG.normal(size=(6, 4))
    t = RNG.integers(0, 4, size=6)
    num = np.zeros_like(y)
    for k in range(4):
        d = np.zeros_like(y)
        d[:, k] = h
        num[:, k] = (loss.value(y + d, t) - loss.value(y - d, t)) / (2 * h)
    np.testing.assert_allclose(loss.teaching(y, t), -num, atol=1e-8)


def test_satlin_gate_equals_eq3():
    a = np.array([-2.0, -1.0 - 1e-15, -1.0, -1 + 1e-15, 0.0, 0.5, 1 - 1e-15, 1.0, 1 + 1e-15, 2.0])
    g = P.get_transfer("satlin")
    # eq. 3: feedback shut down iff |h| >= 1
    np.testing.assert_array_equal(g.gate(a), (np.abs(a) < 1).astype(float))
    np.testing.assert_array_equal(g(a), np.clip(a, -1, 1))


@pytest.mark.parametrize("name", ["tanh", "logistic", "relu", "linear"])
def test_gates_are_derivatives(name):
    g, h = P.get_transfer(name), 1e-6
    a = RNG.normal(size=50) * 2
    a = a[np.abs(a) > 1e-3]
    np.testing.assert_allclose(g.gate(a), (g(a + h) - g(a - h)) / (2 * h), atol=1e-8)
    if g.gate_from_output is not None:
        np.testing.assert_allclose(g.gate_from_output(g(a)), g.gate(a), atol=1e-15)


def test_pbp_signal_is_least_squares_solution():
    for shape in [(10, 20), (20, 10)]:
        W = RNG.normal(size=shape)
        delta = RNG.normal(size=(5, shape[0]))
        got = P.PBP().propagate(W, None, delta)
        want = np.linalg.lstsq(W, delta.T, rcond=None)[0].T  # min-norm least squares
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_ndi_tends_to_pseudoinverse_and_contracting_solution():
    # expanding layer (d_l > d_{l-1}): (BW − αI)^{-1} B tends to a left inverse of W, which acts
    # as W⁺ on every δ in range(W) (eq. 12); with B = −Wᵀ (Tr-Init) it is W⁺ itself.
    W = RNG.normal(size=(20, 10))
    B = RNG.normal(size=(10, 20))
    delta = RNG.normal(size=(5, 10)) @ W.T  # rows in range(W)
    errs = [np.abs(P.NDI(alpha=a).propagate(W, B, delta) - delta @ np.linalg.pinv(W).T).max()
            for a in (1e-2, 1e-5, 1e-8)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-6
    np.testing.assert_allclose(P.NDI(alpha=0.0).operator(W, B) @ W, np.eye(10), atol=1e-10)
    errs = [np.abs(P.NDI(alpha=a).operator(W, -W.T) - np.linalg.pinv(W)).max() for a in (1e-2, 1e-5, 1e-8)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-7
    # contracting layer: B(WB − αI)^{-1} → B(WB)^{-1}
    W = RNG.normal(size=(10, 20))
    B = RNG.normal(size=(20, 10))
    ref = B @ np.linalg.inv(W @ B)
    errs = [np.abs(P.NDI(alpha=a).operator(W, B) - ref).max() / np.abs(ref).max() for a in (1e-2, 1e-5, 1e-8)]
    # the error is O(α): 1000× smaller α, ≥ 100× smaller error
    assert errs[0] > 100 * errs[1] > 1e4 * errs[2] and errs[2] < 1e-5
    # and eq. 10's two forms agree when both inverses exist (square layer, α > 0)
    W, B = RNG.normal(size=(8, 8)), RNG.normal(size=(8, 8))
    a = 0.3
    lhs = B @ np.linalg.inv(W @ B - a * np.eye(8))
    rhs = np.linalg.inv(B @ W - a * np.eye(8)) @ B
    np.testing.assert_allclose(P.NDI(alpha=a).operator(W, B), lhs, atol=1e-12)
    np.testing.assert_allclose(lhs, rhs, atol=1e-10)


def test_ndi_with_transposed_init_is_pseudoinverse():
    W = RNG.normal(size=(10, 20))  # Tr-Init B = −Wᵀ gives W⁺ as α → 0 (Podlaski §3.2)
    np.testing.assert_allclose(P.NDI(alpha=1e-10).operator(W, -W.T), np.linalg.pinv(W), atol=1e-7)


def test_urfb_increment_is_transposed_weight_increment():
    delta, h = RNG.normal(size=(7, 5)), RNG.normal(size=(7, 9))
    r = P.URFB(epsilon=0.25)
    np.testing.assert_allclose(r.feedback_increment(delta, h), 0.25 * (delta.T @ h).T, atol=1e-14)
    np.testing.assert_allclose(r.feedback_increment_from_weight(delta.T @ h), r.feedback_increment(delta, h), atol=1e-14)


def test_dfa_carries_output_error_to_every_layer():
    Ws = [RNG.normal(size=(6, 5)), RNG.normal(size=(4, 6)), RNG.normal(size=(3, 4))]
    Rs = [None, RNG.normal(size=(6, 3)), RNG.normal(size=(4, 3))]
    x = RNG.normal(size=(2, 5))
    fwd = P.forward(Ws, None, x, ["tanh", "tanh", "linear"])
    dL = RNG.normal(size=(2, 3))
    d = P.teaching_signals(P.DFA(), Ws, Rs, fwd, dL, ["tanh", "tanh", "linear"])
    np.testing.assert_allclose(d[0], (dL @ Rs[1].T) * (1 - np.tanh(fwd.As[0]) ** 2), atol=1e-14)
    np.testing.assert_allclose(d[1], (dL @ Rs[2].T) * (1 - np.tanh(fwd.As[1]) ** 2), atol=1e-14)


def test_random_mask_fraction_and_determinism():
    m1 = P.random_mask((40, 50), 0.5, np.random.default_rng(3))
    m2 = P.random_mask((40, 50), 0.5, np.random.default_rng(3))
    assert m1.sum() == 1000 and np.array_equal(m1, m2)
    assert not np.array_equal(m1, P.random_mask((40, 50), 0.5, np.random.default_rng(4)))


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: P.Hinge(mu=0), ["mu", "(0, 1]"]),
        (lambda: P.Hinge(mu=1.5), ["mu", "(0, 1]"]),
        (lambda: P.NDI(alpha=-0.1), ["alpha", "[0, inf)"]),
        (lambda: P.URFB(epsilon=1.2), ["epsilon", "[0, 1]"]),
        (lambda: P.URFB(epsilon=-0.1), ["epsilon", "[0, 1]"]),
        (lambda: P.random_mask((3, 3), 1.0, np.random.default_rng(0)), ["sparsity", "[0, 1)"]),
        (lambda: P.make_rule("backprop"), ["rule", "bp", "urfb"]),
        (lambda: P.get_loss("l1"), ["loss", "hinge", "mse"]),
        (lambda: P.get_transfer("gelu"), ["activation", "satlin", "tanh"]),
        (lambda: parse_sizes("30-x-10"), ["sizes", "30-20-10"]),
        (lambda: check_chain([np.zeros((20, 30)), np.zeros((10, 21))]), ["chain", "21", "20"]),
        (lambda: check_chain([np.zeros((20, 30)), np.zeros((10, 20))], [None, np.zeros((10, 20))]), ["R_2", "(20, 10)"]),
    ],
)
def test_out_of_range_parameters_name_the_parameter_and_range(make, words):
    with pytest.raises(ValueError) as e:
        make()
    for w in words:
        assert w in str(e.value)


def test_specs_are_immutable():
    r = P.URFB(epsilon=0.5)
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        r.epsilon = 0.7


@pytest.mark.parametrize("failure", ["raises", "nan"])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_pinv_survives_a_single_precision_svd_that_fails(lib, failure, monkeypatch):
    """A float32 SVD that fails on a finite matrix (seen on orthogonally initialised autoencoder
    weights a few hundred steps in: it raises, or with MKL on one thread returns NaN) is redone in
    float64: PBP's operator is still W⁺, in float32.  A float64 failure, and NaN from a NaN input,
    are not hidden."""
    import torch

    from plasticity import _array, make_rule

    rng = np.random.default_rng(0)
    W64 = rng.standard_normal((7, 11))
    want = np.linalg.pinv(W64)
    if lib == "numpy":
        mod, W, err, nan = np.linalg, W64.astype(np.float32), np.linalg.LinAlgError, np.full_like
    else:
        mod, W, err = torch.linalg, torch.tensor(W64, dtype=torch.float32), torch.linalg.LinAlgError
        nan = torch.full_like
    real = mod.pinv

    def failing_in_single(a, *args, **kw):
        if a.dtype in (np.float32, torch.float32):
            if failure == "raises":
                raise err("SVD did not converge")
            return nan(a.T, float("nan"))
        return real(a, *args, **kw)

    monkeypatch.setattr(mod, "pinv", failing_in_single)
    got = make_rule("pbp").operator(W)
    assert got.dtype == W.dtype
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=1e-5, atol=1e-6)  # float32 of W⁺
    bad = W * float("nan")  # NaN in, NaN (or the error) out: the fallback does not hide it
    if failure == "nan":
        assert not np.isfinite(np.asarray(make_rule("pbp").operator(bad), dtype=np.float64)).any()
    else:
        with pytest.raises(err):
            make_rule("pbp").operator(bad)
    W_double = W64 if lib == "numpy" else torch.tensor(W64)
    monkeypatch.setattr(mod, "pinv", lambda a, *args, **kw: (_ for _ in ()).throw(err("no")))
    with pytest.raises(err):
        _array.ops(W_double).pinv(W_double)
