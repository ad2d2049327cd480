"""Smoke tests of examples/Lansdell_2019: ``main --quick`` writes sane results.

The full reproductions (minutes) are run by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bridge.app.examples import load_example

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "Lansdell_2019"


def _load(name):
    return load_example(EXAMPLES / f"{name}.py")


def _finite(x):
    return x is not None and math.isfinite(x)


def _mean_image_loss(shared_data, n_train, n_test):
    """½‖x − x̄‖² on the test images, x̄ the mean training image: what an autoencoder gets by
    learning only its output bias, without passing anything through the bottleneck."""
    from bridge.data import load_dataset

    ds = load_dataset("mnist", data_dir=str(shared_data), n_train=n_train, n_test=n_test)
    return float(0.5 * ((ds.x_test - ds.x_train.mean(0)) ** 2).sum(1).mean())


def test_fig1_quick(tmp_path, shared_data):
    mod = _load("fig1")
    ret = mod.main(["--quick", "--out", str(tmp_path), "--data-dir", str(shared_data)])
    assert (tmp_path / "fig1.png").stat().st_size > 0
    res = json.loads((tmp_path / "fig1.json").read_text())
    assert ret == 0
    np_label = f"np c={mod.QUICK['c_h'][0]:g}"
    assert list(res["runs"]) == ["bp", "fa", np_label] == list(res["summary"])
    n_evals = mod.QUICK["epochs"] * mod.QUICK["evals_per_epoch"] + 1
    for label, r in res["runs"].items():
        assert r["epoch"][0] == 0 and r["epoch"][-1] == pytest.approx(mod.QUICK["epochs"])
        assert all(len(v) == n_evals for v in r.values()), label
        assert all(0.0 <= e <= 1.0 for e in r["test_error"]) and all(_finite(v) for v in r["test_loss"])
        assert r["test_error"][-1] < r["test_error"][0] - 0.3, label  # every rule learns (start ≈ 0.9)
        assert r["test_error"][-1] < 0.6, label
        for ang in r["angle_bp_deg"]:  # layers 2 and 3
            assert len(ang) == 2 and all(0.0 <= a <= 180.0 for a in ang), label
    bp, fa, npr = res["runs"]["bp"], res["runs"]["fa"], res["runs"][np_label]
    # BP has no feedback matrix; its teaching signal is the true one
    assert all(v is None for v in bp["rel_dist"] + bp["sign_congruence"])
    assert all(a == pytest.approx(0.0, abs=1e-6) for ang in bp["angle_bp_deg"] for a in ang)
    assert res["summary"]["bp"]["test_error"] < 0.45  # chance is 0.9
    # FA and NP start from the same W and R
    assert fa["rel_dist"][0] == npr["rel_dist"][0] and fa["sign_congruence"][0] == npr["sign_congruence"][0]
    for r in (fa, npr):
        assert all(len(v) == 2 and all(_finite(x) for x in v) for v in r["rel_dist"])
        assert all(len(v) == 2 and all(0.0 <= x <= 1.0 for x in v) for v in r["sign_congruence"])
    # Fig. 1A-C on the top feedback matrix (layer 3, index 1): NP's learned R approaches W_3ᵀ, FA's
    # fixed random R does not (its distance falls only because W_3 grows).  After one quick epoch
    # layer 2 is still close to FA's values, so it is not compared.
    f, n = res["summary"]["fa"], res["summary"][np_label]
    assert n["rel_dist"][1] < 0.6 * f["rel_dist"][1]
    assert n["rel_dist"][1] < 0.6 * npr["rel_dist"][0][1]
    assert n["angle_bp_deg"][1] < f["angle_bp_deg"][1] - 25.0
    assert n["sign_congruence"][1] > f["sign_congruence"][1] + 0.1


def test_fig2_quick(tmp_path, shared_data, monkeypatch):
    mod = _load("fig2")
    simulate, seen = mod.simulate, {}
    monkeypatch.setattr(mod, "simulate", lambda p: seen.setdefault("res", simulate(p)))  # the latent is not saved
    assert mod.main(["--quick", "--out", str(tmp_path), "--data-dir", str(shared_data)]) == 0
    res = seen["res"]
    assert (tmp_path / "fig2.png").stat().st_size > 0
    slim = json.loads((tmp_path / "fig2.json").read_text())
    assert slim["summary"] == res["summary"]
    rules = mod.DEFAULTS["rules"]
    assert list(slim["runs"]) == list(res["runs"]) == rules
    n_test, n_evals = mod.QUICK["n_test"], mod.QUICK["epochs"] * mod.QUICK["evals_per_epoch"] + 1
    baseline = _mean_image_loss(shared_data, mod.QUICK["n_train"], n_test)
    for rule in rules:
        r = slim["runs"][rule]
        assert set(r) == {"epoch", "train_loss", "test_loss"}  # the latent is kept out of the JSON
        assert len(r["epoch"]) == len(r["train_loss"]) == len(r["test_loss"]) == n_evals
        assert all(_finite(v) for v in r["train_loss"] + r["test_loss"])
        # from random weights (≈ 2.3× the mean-image loss) every rule at least learns the mean image
        assert r["test_loss"][0] > 2.0 * baseline
        assert r["test_loss"][-1] < 1.1 * baseline, rule
        z = np.asarray(res["runs"][rule]["latent"])
        assert z.shape == (n_test, 2) and np.isfinite(z).all() and np.abs(z).max() <= 1.0  # tanh units
        labels = res["runs"][rule]["labels"]
        assert len(labels) == n_test and set(labels) <= set(range(10))
    # learning the output bias alone would also reach the mean-image loss; the encoder must have moved:
    # the 2-unit latent of the test images against the same network untrained (epochs = 0).  Over seeds
    # 0–2 ‖z − z₀‖/‖z₀‖ is 0.21–9 (FA least), 0 if only the decoder learned
    untrained = simulate({**mod.QUICK, "data_dir": str(shared_data), "epochs": 0})
    for rule in rules:
        z0 = np.asarray(untrained["runs"][rule]["latent"])
        z = np.asarray(res["runs"][rule]["latent"])
        assert np.linalg.norm(z - z0) > 0.1 * np.linalg.norm(z0), rule

    # BP sends class information through the bottleneck: the between-class share of the latent's variance
    # rises by 0.18–0.23 over seeds 0–2 (0.16–0.39 → 0.38–0.57)
    def class_share(z, labels):
        means = np.stack([z[labels == c].mean(0) for c in np.unique(labels)])
        counts = np.array([(labels == c).sum() for c in np.unique(labels)])
        return float((counts[:, None] * (means - z.mean(0)) ** 2).sum() / len(z) / z.var(0).sum())

    lab = np.asarray(res["runs"]["bp"]["labels"])
    share0 = class_share(np.asarray(untrained["runs"]["bp"]["latent"]), lab)
    assert class_share(np.asarray(res["runs"]["bp"]["latent"]), lab) > share0 + 0.1
    # the rules with a feedback matrix start from the same weights
    assert slim["runs"]["fa"]["test_loss"][0] == slim["runs"]["np"]["test_loss"][0] == slim["runs"]["urfb"]["test_loss"][0]


def test_fig2_fa_fails_through_the_bottleneck(shared_data):
    """Fig. 2's FA-vs-BP claim at reduced size: through the 2-unit layer BP (and the 'matching' rule,
    whose R tracks Wᵀ) get well below the mean-image loss, FA stays clearly above them.

    NP is left out: at this size (and for two of three seeds at full size) it does not beat FA here.
    """
    mod = _load("fig2")
    p = {"data_dir": str(shared_data), "n_train": 6000, "n_test": 500, "epochs": 2, "rules": ["bp", "fa", "urfb"]}
    res = mod.simulate(p)
    s = {k: v["test_loss"] for k, v in res["summary"].items()}
    baseline = _mean_image_loss(shared_data, p["n_train"], p["n_test"])
    assert s["bp"] < 0.9 * baseline
    assert s["bp"] < s["fa"] - 1.0
    assert s["urfb"] < s["fa"] - 0.4
