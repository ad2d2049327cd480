"""Smoke tests of examples/Podlaski_2020: ``main --quick`` writes sane results.

The full reproductions (minutes) are run by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge.app.examples import load_example

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "Podlaski_2020"
#: the smallest NMSE fall every condition shows on each Fig. 3 task at the tiny size (see below)
LEARNS = {"linear": 0.08, "linear-fixed-norm": 0.0002, "nonlinear": 0.008, "nonlinear-paper": 0.04}


def _load(name):
    return load_example(EXAMPLES / f"{name}.py")


def _finite(x):
    return x is not None and math.isfinite(x)


def test_orthogonal_init_is_orthonormal_and_seeded():
    mod = _load("autoencoder")
    for shape in ((30, 250), (250, 30), (40, 40)):
        W = torch.empty(shape)
        mod.orthogonal_(W, torch.Generator().manual_seed(0))
        G = W.T @ W if shape[0] >= shape[1] else W @ W.T
        torch.testing.assert_close(G, torch.eye(min(shape)), atol=1e-5, rtol=0)
        W2 = torch.empty(shape)
        mod.orthogonal_(W2, torch.Generator().manual_seed(0))
        assert torch.equal(W, W2)


def test_autoencoder_quick(quick_example):
    mod = _load("autoencoder")
    out = quick_example("Podlaski_2020/autoencoder")  # one --quick run per session
    assert (out / "autoencoder.png").stat().st_size > 0
    s = json.loads((out / "summary.json").read_text())
    curves = json.loads((out / "curves.json").read_text())
    assert set(mod.DEFAULT_CONDITIONS) <= set(s) and set(mod.DEFAULT_CONDITIONS) <= set(curves)
    assert all(_finite(v) for v in s["baselines"].values())
    for name in mod.DEFAULT_CONDITIONS:
        assert s[name]["diverged"] is None, (name, s[name]["diverged"])
        assert _finite(s[name]["test_mse"]) and _finite(s[name]["train_mse"])
        c = curves[name]
        assert len(c["epoch"]) == len(c["test_mse"]) == len(c["train_mse"]) >= 2
        assert all(_finite(v) for v in c["test_mse"] + c["train_mse"])
        # biases start at zero and W is small or orthogonal: the first error is near ‖x‖² per pixel
        assert c["test_mse"][0] == pytest.approx(s["baselines"]["zero"], rel=0.2)
    # the paper's verdict (§5.2), measured: BP from tiny Gaussian weights is stuck (its test MSE falls
    # 0.7 % over seeds 0–2), the other conditions move off the start: BP-orthogonal 4.1–4.4 %,
    # PBP 3.1–21 %, NDI 18–21 % in the quick run's three steps
    fall = {name: 1.0 - curves[name]["test_mse"][-1] / curves[name]["test_mse"][0] for name in mod.DEFAULT_CONDITIONS}
    stuck = fall["bp-gaussian"]
    assert 0.0 <= stuck < 0.02, fall
    for name in mod.DEFAULT_CONDITIONS:
        assert s[name]["paper_learns"] == mod.PAPER_LEARNS[name]
        if mod.PAPER_LEARNS[name]:
            assert fall[name] > max(0.025, 3.0 * stuck), (name, fall)
    assert fall["ndi-gaussian"] > 0.15, fall


def test_autoencoder_every_rule_and_init_runs(shared_data):
    """All eight conditions of §5.2 (BP, FA, PBP, NDI × Gaussian, orthogonal) on a tiny run: each
    starts at the zero-output error, stays finite, and FA's feedback is drawn as its init says."""
    mod = _load("autoencoder")
    p = {**mod.default_params(quick=True), "data_dir": str(shared_data), "n_train": 100, "n_test": 50,
         "conditions": list(mod.CONDITIONS)}
    res = mod.simulate(p)
    s = mod.summary(res)
    assert set(mod.CONDITIONS) <= set(s) and len(mod.CONDITIONS) == 8
    for name in mod.CONDITIONS:
        r = res[name]
        assert r["diverged"] is None and all(_finite(v) for v in r["test_mse"]), name
        assert r["test_mse"][0] == pytest.approx(res["baselines"]["zero"], rel=0.2), name
        assert s[name]["paper_learns"] == mod.PAPER_LEARNS[name]
    with pytest.raises(ValueError, match="conditions: unknown fa-uniform"):
        mod.simulate({**p, "conditions": ["fa-uniform"]})


@pytest.fixture(scope="module")
def fig3_small():
    """Every Fig. 3 condition on every task at a tiny size (40 examples, one epoch): (module, results)."""
    mod = _load("fig3")
    p = {**mod.default_params(quick=True), "n_train": 40, "n_test": 40, "epochs": 1, "evals_per_epoch": 2,
         "di_max_steps": 200}
    return mod, mod.simulate(p, progress=False)


def test_fig3_all_conditions_small(tmp_path, fig3_small):
    """Every Fig. 3 condition runs on every task (SDI and gated DI on the nonlinear ones); linear DI sits on NDI."""
    from bridge.app.plots import save_figure

    mod, res = fig3_small
    assert set(res) - {"params"} == set(mod.TASKS)
    for kind, spec in mod.TASKS.items():
        assert set(res[kind]) == set(mod.CONDITIONS) - set(spec["skip"]), kind
    assert {"sdi", "di-gated"} <= set(mod.TASKS["linear"]["skip"]) and not mod.TASKS["nonlinear-paper"]["skip"]
    s = mod.summary(res)
    for kind in mod.TASKS:
        assert s[kind]["label"] == mod.TASKS[kind]["label"]
        for name, row in s[kind].items():
            if name == "label":
                continue
            assert row["nmse"] != "diverged" and _finite(row["nmse"]), (kind, name)
            if mod.CONDITIONS[name][0] == "di":
                assert row["max_eig_final"] < 0 and len(row["angle_ndi_ungated_deg"]) == (1 if kind.startswith("linear") else 2)
    # every rule starts from the same weights (§7.5.2 "exact copies") and zero biases (§7.5.3):
    # one NMSE at epoch 0 per task (BP and PBP draw no feedback matrix and would otherwise differ)
    for kind in mod.TASKS:
        first = [r["nmse"][0] for r in res[kind].values()]
        assert max(first) - min(first) <= 1e-12 * max(first), (kind, first)
    # all tasks learn: over seeds 0–2 at this size the NMSE falls for every condition by 12.5–35 %
    # (linear; BP < 1 %: from weights ~0.01 it barely moves, Fig. 3's slow BP), 0.03–0.1 % (fixed-norm
    # steps of 0.01), 1.2–4 % (Lillicrap teacher), 7.1–11 % (paper teacher)
    for kind in mod.TASKS:
        for name, r in res[kind].items():
            drop = 1.0 - r["nmse"][-1] / r["nmse"][0]
            if kind == "linear" and name == "bp":
                assert 0.0 <= drop < 0.02, (kind, name, drop)
            else:
                assert drop > LEARNS[kind], (kind, name, drop)
    # linear network: DI's fixed point is eq. 10, NDI's operator, and no gate exists: 0° (same cap on both)
    for kind in ("linear", "linear-fixed-norm"):
        for name in ("di", "di-a0", "di-rinit"):
            assert s[kind][name]["angle_ndi_deg"][0] < 1.0, (kind, name)
    assert save_figure(tmp_path / "fig3.png", mod.plot, res, nrows=4, ncols=4, squeeze=False).stat().st_size > 0


def test_fig3_di_is_near_ndi_with_the_papers_teacher_only(fig3_small):
    """§7.5.3's teacher (U(±0.01): targets ~0.005) keeps DI's δ close to NDI's; Lillicrap's order-1
    teacher does not.  Gated DI (linear controller, then g'(a)) is NDI up to where the cap acts."""
    mod, res = fig3_small
    s = mod.summary(res)
    paper, lillicrap = s["nonlinear-paper"]["di"], s["nonlinear"]["di"]
    # measured (40 steps; seeds 0, 1, 2): δ_1 2.8°, 1.4°, 5.9° / δ_2 0.07°, 0.02°, 0.07° with the
    # paper's teacher against 15.7°, 14.7°, 13.6° / 11.7°, 9.4°, 7.7° with Lillicrap's; the hidden
    # units sit at a ≈ 0 in both (mean g'(a) > 0.99), so the gap is eq. 16's inversion of large errors
    assert paper["angle_ndi_deg"][0] < 8.0 and paper["angle_ndi_deg"][1] < 0.5, paper
    assert lillicrap["angle_ndi_deg"][0] > 10.0 and lillicrap["angle_ndi_deg"][1] > 5.0, lillicrap
    assert lillicrap["angle_ndi_deg"][1] > 20 * paper["angle_ndi_deg"][1]
    for kind in ("nonlinear", "nonlinear-paper"):
        g = s[kind]["di-gated"]
        # the cap (§7.5.1) acts after the gate in gated DI, before it in NDI: per example the two are
        # parallel, flattened over the batch they differ by < 0.1° here (measured 0.03–0.06°)
        assert max(g["angle_ndi_deg"]) < 0.5, (kind, g)
        assert min(s[kind]["di"]["gate_mean"]) > 0.99


def test_fixed_norm_sgd_steps_have_norm_lr():
    """Fig. 3b: each parameter moves by exactly lr along −grad, whatever the gradient's size."""
    mod = _load("fig3")
    g = torch.Generator().manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(20, 30, generator=g, dtype=torch.float64)),
          torch.nn.Parameter(torch.randn(10, generator=g, dtype=torch.float64)),
          torch.nn.Parameter(torch.randn(5, 5, dtype=torch.float64))]
    before = [p.detach().clone() for p in ps]
    grads = [1e-6 * torch.randn(20, 30, generator=g, dtype=torch.float64),
             1e3 * torch.randn(10, generator=g, dtype=torch.float64), torch.zeros(5, 5, dtype=torch.float64)]
    for p, gr in zip(ps, grads):
        p.grad = gr.clone()
    mod.FixedNormSGD(ps, lr=0.01).step()
    for p, b, gr in zip(ps[:2], before, grads):
        step = p.detach() - b
        assert float(step.norm()) == pytest.approx(0.01, rel=1e-12)
        torch.testing.assert_close(step, -0.01 * gr / gr.norm(), rtol=1e-12, atol=1e-15)
    assert torch.equal(ps[2].detach(), before[2])  # a zero update stays zero
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="lr"):
            mod.FixedNormSGD(ps, lr=bad)


def test_paper_teacher_follows_section_7_5_3():
    mod = _load("fig3")
    d = mod.paper_teacher(50, 30, seed=1, scale=0.01)
    t = d.teacher
    for l in range(3):
        assert np.abs(t[f"W{l}"]).max() <= 0.01 and np.abs(t[f"b{l}"]).max() <= 0.01
    assert [t[f"W{l}"].shape for l in range(3)] == [(20, 30), (10, 20), (10, 10)]
    h = d.x_test.astype(np.float64)
    for l in range(3):
        a = h @ t[f"W{l}"].T + t[f"b{l}"]
        h = np.tanh(a) if l < 2 else a
    np.testing.assert_allclose(d.y_test, h, rtol=1e-6, atol=1e-9)
    assert np.sqrt(np.mean(d.y_train.astype(np.float64) ** 2)) < 0.03  # small targets
    # more training data leaves the teacher and the test set unchanged
    d2 = mod.paper_teacher(80, 30, seed=1, scale=0.01)
    assert np.array_equal(d.x_test, d2.x_test) and np.array_equal(d.y_test, d2.y_test)
    for bad in (0.0, -0.01, float("inf")):
        with pytest.raises(ValueError, match="scale"):
            mod.paper_teacher(10, 10, scale=bad)
    with pytest.raises(ValueError, match="tasks"):
        _load("fig3").simulate({"tasks": ["nonlinear-tiny"]}, progress=False)


def test_teacher_scale_sweep_quick(tmp_path):
    """DI–NDI grows with the teacher's scale; at this budget the hidden units stay at a ≈ 0, so the
    gap is the nonlinear inversion (DI ∠ NDI ≈ DI ∠ ungated eq. 10), and gated DI ∠ NDI stays ~0."""
    mod = _load("teacher_scale")
    p = {**mod.default_params(quick=True), "scales": [0.01, 1.0]}
    res = mod.simulate(p)
    small, large = (r["rows"][-1] for r in res["runs"])
    assert all(r["diverged"] is None for r in res["runs"])
    # measured (seed 0, 100 steps): δ_1 2.2° at s = 0.01, 17.6° at s = 1
    assert small["angle_ndi_deg"][0] < 4.0 and large["angle_ndi_deg"][0] > 10.0, (small, large)
    assert large["angle_ndi_deg"][0] > 3 * small["angle_ndi_deg"][0]
    for row in (small, large):
        assert min(row["gate_mean"]) > 0.99
        assert abs(row["angle_ndi_deg"][0] - row["angle_ungated_deg"][0]) < 0.5
        assert max(row["angle_gated_ndi_deg"]) < 0.5
        assert max(row["angle_gated_ndi_worst_example_deg"]) < 1e-4  # per example: parallel (float64)
    assert res["runs"][1]["target_rms"] > 50 * res["runs"][0]["target_rms"]
    for bad in ({"scales": []}, {"scales": [0.0]}, {"lr": -1.0}, {"epochs": 0}):
        with pytest.raises(ValueError):
            mod.simulate({**p, **bad})
    from bridge.app.plots import save_figure

    assert save_figure(tmp_path / "ts.png", mod.plot, res, ncols=2).stat().st_size > 0


def test_mnist_di_tracks_its_ungated_control(tmp_path, shared_data):
    mod = _load("mnist")
    p = {**mod.default_params(quick=True), "data_dir": str(shared_data), "n_train": 320, "n_test": 200,
         "conditions": ["ndi", "di", "di-linear-g", "di-steady", "di-steady-nossa", "di-gated"]}
    res = mod.simulate(p)
    for name in p["conditions"]:
        assert res[name]["diverged"] is None and all(0 <= e <= 1 for e in res[name]["test_error"])
    a = res["di"]["angles"]
    # full DI (Euler, tanh in eq. 14) is far closer to the ungated operator than to gated NDI
    assert a["angle_ndi_ungated_deg"][0] < 2.0 < a["angle_ndi_deg"][0]
    assert res["di"]["max_eig_final"] < 0
    # gated DI's fixed point is NDI's (no cap on MNIST); its ungated reference (linear g, so g' = 1)
    # is eq. 14's linear fixed point, not gated DI itself (measured 11° at this size)
    g = res["di-gated"]["angles"]
    assert g["angle_ndi_deg"][0] < 1e-4 and g["angle_ndi_ungated_deg"][0] > 2.0, g
    # SSA off changes nothing while S9 stays stable (10 steps here): the same run to the last digit
    off, on = res["di-steady-nossa"], res["di-steady"]
    assert off["unstable_steps"] == on["unstable_steps"] == 0 and off["first_unstable_step"] is None
    assert off["test_error"] == on["test_error"] and off["stabilisations"] == 0


def test_autoencoder_records_a_runaway_condition_and_goes_on(shared_data):
    mod = _load("autoencoder")
    p = {**mod.default_params(quick=True), "data_dir": str(shared_data), "n_train": 100, "n_test": 50,
         "conditions": ["bp-orthogonal", "fa-gaussian"], "lr": 1e3}
    res = mod.simulate(p)
    assert res["bp-orthogonal"]["diverged"].startswith("Diverged:")
    assert not res["bp-orthogonal"]["learns"] and "fa-gaussian" in res


def test_autoencoder_runs_split_over_processes_merge(quick_example, shared_data, tmp_path, capsys):
    """``--merge``: the folders of runs with different conditions and the same settings become one
    figure and summary holding each run's own numbers, a condition in two folders coming from the
    later (a rerun); different settings or a folder of something else are one-line errors."""
    import shutil

    mod = _load("autoencoder")
    a = quick_example("Podlaski_2020/autoencoder")
    b = tmp_path / "b"
    assert mod.EX.run(mod.main, ["--quick", "--conditions", "fa-orthogonal", "--out", str(b),
                                 "--data-dir", str(shared_data)]) == 0
    merged = tmp_path / "m"
    assert mod.EX.run(mod.main, ["--merge", str(a), str(b), "--out", str(merged)]) == 0
    capsys.readouterr()
    s = json.loads((merged / "summary.json").read_text())
    sa, sb = (json.loads((f / "summary.json").read_text()) for f in (a, b))
    assert set(s) == set(sa) | set(sb)
    for name in mod.DEFAULT_CONDITIONS:
        assert s[name] == sa[name]
    assert s["fa-orthogonal"] == sb["fa-orthogonal"]
    assert (merged / "autoencoder.png").stat().st_size > 0
    c = tmp_path / "c"
    shutil.copytree(b, c)
    curves = json.loads((c / "curves.json").read_text())
    curves["params"]["epochs"] = 2
    (c / "curves.json").write_text(json.dumps(curves))
    rerun = tmp_path / "rerun"
    shutil.copytree(b, rerun)
    c_rerun = json.loads((rerun / "curves.json").read_text())
    c_rerun["fa-orthogonal"]["test_mse"][-1] = 0.5  # as if rerun (the summary derives from the curves)
    (rerun / "curves.json").write_text(json.dumps(c_rerun))
    assert mod.EX.run(mod.main, ["--merge", str(merged), str(rerun), "--out", str(tmp_path / "m2")]) == 0
    said = capsys.readouterr().out
    assert f"fa-orthogonal: the run in {rerun} replaces the one in {merged}" in said
    s2 = json.loads((tmp_path / "m2" / "summary.json").read_text())
    assert s2["fa-orthogonal"]["test_mse"] == 0.5 and s2["pbp-gaussian"] == sa["pbp-gaussian"]
    for folders, says in (([a, c], "epochs differ"), ([a, tmp_path / "none"], "not a results folder")):
        with pytest.raises(SystemExit):
            mod.EX.run(mod.main, ["--merge", *map(str, folders), "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert says in err, err
