"""The ``max_norm`` error cap of PBP and NDI (Podlaski & Machens 2020, §7.5.1).

Each example's carried signal ``propagate(δ_l)`` is rescaled to norm ≤ max_norm before the gate.
The torch engine hands a layer autograd's ``grad = −δ/n``, so the cap must act on the *true* δ:
the engine's ΔW with the cap equals the numpy reference :func:`plasticity.sgd_step`'s (float64).
"""

import json
import math

import numpy as np
import pytest
import torch

import plasticity as P
from bridge import FeedbackMLP, TeachingLoss
from bridge.app import TrainConfig
from bridge.app.cli import main
from bridge.app.runs import build_model
from plasticity.rules import cap_rows

SIZES = (12, 9, 7, 5)  # contracting layers: NDI's B(WB − αI)⁻¹ branch
SIZES_EXP = (6, 9, 11, 5)  # expanding hidden layer: NDI's (BW − αI)⁻¹B branch too


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(n=16, d_in=SIZES[0], seed=1, classes=5):
    g = gen(seed)
    return torch.randn(n, d_in, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


RULES = {"pbp": P.PBP, "ndi": P.NDI}


@pytest.mark.parametrize("name", ["pbp", "ndi"])
def test_max_norm_is_validated(name):
    cls = RULES[name]
    assert cls().max_norm is None
    assert cls(max_norm=10).max_norm == 10.0 and isinstance(cls(max_norm=10).max_norm, float)
    for bad in (0, -1.0, math.nan, "x"):
        with pytest.raises(ValueError, match="max_norm"):
            cls(max_norm=bad)
    assert P.make_rule(name, max_norm=1.0).max_norm == 1.0
    assert P.make_rule(name, max_norm=None).max_norm is None


def test_cap_rows_numpy_and_torch():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(8, 5)) * np.array([0.1, 0.5, 1, 2, 3, 5, 10, 0])[:, None]
    out = cap_rows(c, 1.0)
    nrm = np.linalg.norm(c, axis=1)
    small = nrm <= 1.0
    assert small.any() and (~small).any()
    np.testing.assert_array_equal(out[small], c[small])  # untouched rows bit-for-bit
    np.testing.assert_allclose(np.linalg.norm(out[~small], axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(out[~small] / np.linalg.norm(out[~small], axis=1)[:, None],
                               c[~small] / nrm[~small, None], rtol=1e-14)  # direction kept
    assert np.isfinite(out).all()  # the zero row: no 0/0
    t = cap_rows(torch.as_tensor(c), 1.0)
    np.testing.assert_allclose(t.numpy(), out, rtol=1e-14, atol=0)
    assert cap_rows(c, None) is c
    # scale-aware: a signal given as s × c is capped as c is, then carries the s
    s = -1.0 / 8
    np.testing.assert_allclose(cap_rows(s * c, 1.0, scale=s), s * out, rtol=1e-14, atol=0)
    with pytest.raises(ValueError):
        cap_rows(c, 1.0, scale=0.0)


@pytest.mark.parametrize("name", ["pbp", "ndi"])
def test_propagate_caps_each_row_and_is_scale_aware(name):
    rng = np.random.default_rng(1)
    W = rng.normal(size=(6, 9)) / 3
    R = rng.normal(size=(9, 6)) / 3
    delta = rng.normal(size=(20, 6)) * rng.uniform(0.1, 5.0, size=(20, 1))
    free = RULES[name]().propagate(W, R, delta)
    nrm = np.linalg.norm(free, axis=1)
    m = float(np.median(nrm))
    capped = RULES[name](max_norm=m).propagate(W, R, delta)
    assert np.all(np.linalg.norm(capped, axis=1) <= m * (1 + 1e-14))
    keep = nrm <= m
    np.testing.assert_array_equal(capped[keep], free[keep])
    np.testing.assert_allclose(capped[~keep], free[~keep] * (m / nrm[~keep, None]), rtol=1e-13)
    # the engine's convention: signal = −δ/n, scale = −1/n  →  −capped/n
    n = delta.shape[0]
    rule = RULES[name](max_norm=m)
    np.testing.assert_allclose(rule.propagate_scaled(W, R, -delta / n, -1.0 / n), -capped / n, rtol=1e-13, atol=1e-15)
    # rules without a cap ignore the scale
    np.testing.assert_array_equal(P.BP().propagate_scaled(W, R, delta, -1.0 / n), P.BP().propagate(W, R, delta))


def assert_close_scaled(a, b, tol):
    """|a − b| ≤ tol · max|b| elementwise: float64 round-off grows with the size of the values compared
    (NDI's expanding branch carries updates of order 10–100, whose last bits differ across BLAS builds)."""
    a, b = np.asarray(a), np.asarray(b)
    scale = max(float(np.abs(b).max()), np.finfo(np.float64).tiny) if b.size else 1.0
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


def test_scaled_tolerance_follows_the_values():
    """Last-bit differences on values ≈ 40 pass; a 1e-9 relative difference still fails."""
    b = np.array([40.0, -37.5, 0.25])
    assert_close_scaled(b * (1 + 1e-13), b, 1e-12)  # 4e-12 absolute on the largest entry
    with pytest.raises(AssertionError):
        assert_close_scaled(b * (1 + 1e-9), b, 1e-12)


def _reference_and_engine(rule, sizes, x, y):
    model = FeedbackMLP(sizes, rule, activation="tanh", generator=gen(2), dtype=torch.float64)
    TeachingLoss("ce")(model(x), y).backward()
    Ws = [l.weight.detach().numpy() for l in model.linears]
    bs = [l.bias.detach().numpy() for l in model.linears]
    Rs = [None if l.feedback is None else l.feedback.detach().numpy() for l in model.linears]
    new_W, new_b, _, _, deltas = P.sgd_step(rule, Ws, bs, Rs, x.numpy(), y.numpy(), ["tanh", "tanh", "linear"],
                                           P.CrossEntropy(), lr=1.0)
    ref = [nw - w for nw, w in zip(new_W, Ws)]
    ref_b = [nb - b for nb, b in zip(new_b, bs)]
    eng = [-l.weight.grad.numpy() for l in model.linears]
    eng_b = [-l.bias.grad.numpy() for l in model.linears]
    return ref, eng, ref_b, eng_b, (Ws, bs, Rs)


@pytest.mark.parametrize("sizes", [SIZES, SIZES_EXP], ids=["contracting", "expanding"])
@pytest.mark.parametrize("name", ["pbp", "ndi"])
def test_engine_with_cap_equals_plasticity_reference(name, sizes):
    """Torch engine (grad = −δ/n) and numpy sgd_step (true δ) agree with the cap active on some rows."""
    x, y = batch(d_in=sizes[0])
    # pick max_norm between the smallest and largest carried row norm of the uncapped reference
    ref0, _, _, _, (Ws, bs, Rs) = _reference_and_engine(RULES[name](), sizes, x, y)
    fwd = P.forward(Ws, bs, x.numpy(), ["tanh", "tanh", "linear"])
    dL = P.output_signal(P.CrossEntropy(), fwd, y.numpy(), "linear")
    carried = RULES[name]().propagate(Ws[-1], Rs[-1], dL)
    m = float(np.median(np.linalg.norm(carried, axis=1)))
    ref, eng, ref_b, eng_b, _ = _reference_and_engine(RULES[name](max_norm=m), sizes, x, y)
    for a, b in zip(eng + eng_b, ref + ref_b):
        assert_close_scaled(a, b, 1e-12)
    # the cap changed the hidden updates (so the test is not vacuous), and left the output layer alone
    assert max(np.abs(r - r0).max() for r, r0 in zip(ref[:-1], ref0[:-1])) > 1e-6
    np.testing.assert_array_equal(ref[-1], ref0[-1])
    # a cap above every row norm changes nothing (the engine is not capping −δ/n at max_norm/n… twice)
    big, eng_big, _, _, _ = _reference_and_engine(RULES[name](max_norm=1e6), sizes, x, y)
    for a, b in zip(eng_big, ref0):
        assert_close_scaled(a, b, 1e-12)


def test_engine_cap_is_on_true_delta_not_batch_scaled():
    """A row capped at m in the engine is capped at m whatever the batch size (scale-aware)."""
    x, y = batch(n=32)
    m = 0.05
    rule = P.PBP(max_norm=m)
    model = FeedbackMLP(SIZES, rule, activation="tanh", generator=gen(3), dtype=torch.float64)
    seen = []
    lin = model.linears[-1]
    orig = rule.propagate_scaled

    def spy(W, R, signal, scale, *, delta_out=None):
        out = orig(W, R, signal, scale, delta_out=delta_out)
        seen.append(torch.linalg.norm(out, dim=1) / abs(scale))
        return out

    object.__setattr__(rule, "propagate_scaled", spy)  # frozen dataclass: patch this instance only
    assert lin.rule is rule
    TeachingLoss("ce")(model(x), y).backward()
    nrm = torch.cat(seen)
    assert float(nrm.max()) <= m * (1 + 1e-12)
    assert float(nrm.max()) >= m * (1 - 1e-12)  # some rows hit the cap


def test_train_config_and_cli_pass_max_norm(tmp_path):
    cfg = TrainConfig(task="lillicrap-linear", rule="pbp", rule_params={"max_norm": 10}).resolved()
    model = build_model(cfg, cfg.sizes[0], cfg.sizes[-1])
    assert model.rule == P.PBP(max_norm=10.0)
    with pytest.raises(ValueError, match="max_norm"):
        TrainConfig(task="lillicrap-linear", rule="ndi", rule_params={"max_norm": -1}).resolved()
    out = tmp_path / "t"
    rc = main(["train", "--task", "lillicrap-linear", "--rule", "pbp", "--rule-param", "max_norm=10",
               "--sizes", "30-20-10", "--epochs", "1", "--n-train", "200", "--lr", "0.005", "--batch-size", "10",
               "--seed", "0", "--out", str(out), "--quiet"])
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["rule_params"] == {"max_norm": 10}
    assert math.isfinite(json.loads((out / "summary.json").read_text())["final"]["test_loss"])
