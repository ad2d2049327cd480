"""Smoke tests of examples/Lillicrap_2016: each script's ``main --quick`` writes sane results.

The full reproductions (minutes) are run by hand; their numbers are in docs/results.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bridge.app.examples import load_example

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "Lillicrap_2016"


def _load(name):
    return load_example(EXAMPLES / f"{name}.py")


def _finite(x):
    return x is not None and math.isfinite(x)


def test_fig1_quick(quick_example):
    out = quick_example("Lillicrap_2016/fig1")  # one --quick run per session
    assert (out / "fig1.png").stat().st_size > 0
    res = json.loads((out / "results.json").read_text())
    c = res["conditions"]
    for cond in ("shallow", "bp", "fa", "np"):
        nse = c[cond]["nse"][0]
        assert nse[0] == pytest.approx(1.0, abs=0.05)  # W ~ U(±0.01): output ≈ 0 at the start
        assert all(_finite(v) for v in nse)
    # FA and BP learn, shallow learning (only W trains, B = 0) barely does
    assert c["fa"]["nse"][0][-1] < 0.5 * c["fa"]["nse"][0][0]
    assert c["bp"]["nse"][0][-1] < 0.5 * c["bp"]["nse"][0][0]
    assert c["shallow"]["nse"][0][-1] > 0.9
    # FA's hidden update starts near 90° from BP's and aligns while learning
    ang = c["fa"]["angle_bp_deg"][0]
    assert all(0.0 <= a <= 180.0 for a in ang)
    assert ang[0] > 60.0 and ang[-1] < ang[0] - 20.0
    assert all(a == pytest.approx(0.0, abs=1e-6) for a in c["bp"]["angle_bp_deg"][0])
    assert all(a is None for a in c["shallow"]["angle_bp_deg"][0])  # B = 0: no hidden signal
    # node perturbation (Fig. 1d, dark grey): its hidden layer learns — it ends below shallow
    # learning, whose hidden weights stay put — but far more slowly than FA
    np_nse, shallow = c["np"]["nse"][0], c["shallow"]["nse"][0]
    assert np_nse[-1] < shallow[-1] - NP_MARGIN
    assert np_nse[-1] > 10 * c["fa"]["nse"][0][-1]


#: quick fig1 (300 examples), seeds 0–2: shallow ends at 0.997–0.998, NP at 0.874–0.958
NP_MARGIN = 0.02


@pytest.mark.parametrize("bad", [{"conditions": ["bp", "rl"]}, {"np_lr": 0.0}, {"np_sigma": -1.0}])
def test_fig1_rejects_bad_options(bad):
    mod = _load("fig1")
    with pytest.raises(ValueError, match=next(iter(bad))):
        mod.simulate({**mod.QUICK, **bad})


def test_fig2cd_quick(quick_example):
    """Task 3 at quick size: every condition trains, both depths learn under BP and FA (FA's deeper
    layer through two random matrices), and shallow learning stays far behind."""
    mod = _load("fig2cd")
    out = quick_example("Lillicrap_2016/fig2cd")  # one --quick run per session
    assert (out / "fig2cd.png").stat().st_size > 0
    res = json.loads((out / "results.json").read_text())
    c = res["conditions"]
    assert set(c) == set(mod.CONDITIONS)
    for cond in ("bp-3", "fa-3", "bp-4", "fa-4"):
        nse = c[cond]["nse"][0]
        assert nse[0] > 0.9 and all(_finite(v) for v in nse)
        assert nse[-1] < 0.4 * nse[0], cond  # seeds 0–2: ratios 0.14–0.26
    # only the output layer learning: far worse than the trained hidden layers
    assert c["shallow-3"]["nse"][0][-1] > 1.5 * c["bp-3"]["nse"][0][-1]  # seeds 0–2: 0.35 vs 0.14
    # FA's hidden signals in the deep net: one angle per hidden layer, both below 90° at the end
    last = c["fa-4"]["angle_bp_deg"][0][-1]
    assert len(last) == 2 and all(0.0 <= a < 75.0 for a in last)  # seeds 0–2: 27–50°
    s = res["summary"]
    assert s["bp_4_minus_3"]["n"] == 1 and s["fa_4_minus_3"]["n"] == 1


def test_fig2cd_rejects_bad_options():
    mod = _load("fig2cd")
    with pytest.raises(ValueError, match="conditions"):
        mod.simulate({"conditions": ["bp-5"]})
    with pytest.raises(ValueError, match="epochs"):
        mod.simulate({"epochs": 0})


def test_fig4_quick(quick_example):
    mod = _load("fig4")
    out = quick_example("Lillicrap_2016/fig4")  # one --quick run per session
    assert (out / "fig4.png").stat().st_size > 0
    res = json.loads((out / "results.json").read_text())
    assert [r["omega"] for r in res["runs"]] == mod.QUICK["omegas"]
    for run in res["runs"]:
        nse = run["nse"][0]
        assert nse[-1] < 0.5 * nse[0]
        for key in ("angle_bp_deg", "angle_pbp_deg"):
            assert all(0.0 <= a <= 180.0 for a in run[key][0])
    for row in res["summary"]:
        assert 0.0 <= row["fraction_pbp_smaller"] <= 1.0
        assert _finite(row["angle_bp_deg_late"]) and _finite(row["angle_pbp_deg_late"])


def test_task2_mnist_quick(quick_example):
    out = quick_example("Lillicrap_2016/task2_mnist")  # one --quick run per session
    assert (out / "task2_mnist.png").stat().st_size > 0
    res = json.loads((out / "results.json").read_text())
    assert res["params"]["n_train"] == 2000 and res["params"]["n_test"] == 1000
    for cond in ("bp", "fa", "fa_sparse50"):
        s = res["summary"][cond]
        assert s["n"] == 1 and s["failed"] == 0
        err = res["conditions"][cond]["test_error"][0]
        assert all(0.0 <= e <= 1.0 for e in err)
    # one epoch on 2000 images: BP is clearly better than chance (90 %)
    assert res["summary"]["bp"]["test_error_pct_mean"] < 75.0
    # FA learns too (seeds 0–2: 0.87–0.92 → 0.65–0.80, a fall of 0.13–0.25) and sparse FA less so
    # (a fall of 0.06–0.11) …
    fa = res["conditions"]["fa"]["test_error"][0]
    assert fa[-1] < fa[0] - 0.1 and fa[-1] < 0.85
    sparse = res["conditions"]["fa_sparse50"]["test_error"][0]
    assert sparse[-1] < sparse[0] - 0.04
    # … while its hidden update is nowhere near BP's (87–90° at this size): the feedback is random, not Wᵀ
    assert all(a > 60.0 for a in res["conditions"]["fa"]["angle_bp_deg"][0])


@pytest.mark.slow
def test_fig4_small_weights_favour_pbp(tmp_path):
    """Fig. 4's claim at reduced size: from ω = 0.001 FA's update ends much closer to PBP's than BP's."""
    mod = _load("fig4")
    res = mod.simulate({"omegas": [0.001, 0.25], "seeds": 1, "epochs": 3, "evals_per_epoch": 8})
    small, large = res["summary"]
    assert small["nse_final"] < 1e-2
    assert small["angle_pbp_deg_late"] < small["angle_bp_deg_late"] - 10.0
    # the preference for PBP is weaker when the weights start large
    gap = lambda r: r["angle_bp_deg_late"] - r["angle_pbp_deg_late"]  # noqa: E731
    assert gap(small) > gap(large)
