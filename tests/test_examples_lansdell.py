"""Tests of examples/Lansdell_2019: the tuning protocol (validation split, random search), and
``main --quick`` of Figs. 1–2 over several seeds.

The full reproductions (tens of minutes) are run by hand; see docs/results.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

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


# ------------------------------------------------------------------------------------ the protocol
def test_validation_split_is_held_out_of_the_training_set():
    P = _load("_protocol")
    x = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    data = SimpleNamespace(x_train=x, y_train=np.arange(100), x_test=np.full((5, 3), np.nan), y_test=np.zeros(5))
    fit, idx = P.validation_split(data, 30, 50, seed=1)
    assert len(fit.x_test) == 30 and len(fit.x_train) == 50
    val, tr = set(fit.y_test.tolist()), set(fit.y_train.tolist())
    assert not val & tr and val | tr <= set(range(100))  # disjoint, both from the training set
    assert np.isfinite(fit.x_test).all()  # the (NaN) test set is not touched
    np.testing.assert_array_equal(fit.x_train[:, 0], fit.y_train)
    fit2, _ = P.validation_split(data, 30, None, seed=1)
    assert len(fit2.x_train) == 70 and set(fit2.y_test.tolist()) == val  # same seed, same held-out part
    for bad in (0, 100, 2.5):
        with pytest.raises(ValueError, match="n_val"):
            P.validation_split(data, bad)


def test_random_search_picks_the_lowest_validation_score():
    from bridge.train import Diverged

    P = _load("_protocol")
    space = {"lr": (1e-3, 1.0), "c_h": (0.01, 0.1)}
    seen = []

    def score(pt):  # distance to lr = 0.05 in log space; the largest rates "diverge"
        seen.append(dict(pt))
        if pt["lr"] > 0.5:
            raise Diverged("loss became nan", 3)
        return abs(math.log(pt["lr"] / 0.05))

    res = P.random_search(space, 12, score, seed=3)
    assert [p["params"] for p in res["points"]] == seen and len(seen) == 12  # every point scored, in order
    for p in res["points"]:
        assert all(space[k][0] <= v <= space[k][1] for k, v in p["params"].items())
    scores = [p["score"] for p in res["points"]]
    assert res["best"] == int(np.argmin(scores)) and res["best_params"] == seen[res["best"]]
    assert scores[res["best"]] == min(abs(math.log(p["lr"] / 0.05)) for p in seen if p["lr"] <= 0.5)
    assert all((p["score"] == math.inf) == (p["diverged"] is not None) == (p["params"]["lr"] > 0.5)
               for p in res["points"])
    assert res == P.random_search(space, 12, lambda pt: score(pt), seed=3)  # seeded
    # log-uniform: about half the draws of a 3-decade range lie below its geometric middle
    lrs = [p["lr"] for p in P.draw({"lr": (1e-3, 1.0)}, 400, seed=0)]
    assert 0.4 < np.mean(np.array(lrs) < math.sqrt(1e-3)) < 0.6
    with pytest.raises(ValueError, match="every one"):
        P.random_search(space, 3, lambda pt: math.nan)
    with pytest.raises(ValueError, match="search range of lr"):
        P.random_search({"lr": (0.0, 1.0)}, 3, score)


# ------------------------------------------------------------------------------------ Fig. 1
def test_fig1_quick_seeds(tmp_path, shared_data):
    mod = _load("fig1")
    ret = mod.main(["--quick", "--seeds", "2", "--out", str(tmp_path), "--data-dir", str(shared_data)])
    assert (tmp_path / "fig1.png").stat().st_size > 0
    res = json.loads((tmp_path / "fig1.json").read_text())
    assert ret == 0 and res["search"] is None and res["seeds"] == [0, 1] and len(res["per_seed"]) == 2
    assert res["settings"] == mod.DEFAULTS["settings"]
    n_evals = mod.QUICK["epochs"] * mod.QUICK["evals_per_epoch"] + 1
    for ps in res["per_seed"]:
        assert list(ps) == ["bp", "fa", "np"]
        for label, r in ps.items():
            assert r["epoch"][0] == 0 and r["epoch"][-1] == pytest.approx(mod.QUICK["epochs"])
            assert all(len(v) == n_evals for v in r.values()), label
            assert all(0.0 <= e <= 1.0 for e in r["test_error"]) and all(_finite(v) for v in r["test_loss"])
            assert r["test_error"][-1] < r["test_error"][0] - 0.3, label  # every rule learns (start ≈ 0.9)
            for ang in r["angle_bp_deg"]:  # layers 2 and 3
                assert len(ang) == 2 and all(0.0 <= a <= 180.0 for a in ang), label
        bp, fa, npr = ps["bp"], ps["fa"], ps["np"]
        assert all(v is None for v in bp["rel_dist"] + bp["sign_congruence"])  # BP has no feedback matrix
        assert all(a == pytest.approx(0.0, abs=1e-6) for ang in bp["angle_bp_deg"] for a in ang)
        assert fa["rel_dist"][0] == npr["rel_dist"][0]  # FA and NP start from the same W and R
        # Fig. 1A-C on the top feedback matrix (layer 3): NP's learned R approaches W_3ᵀ, FA's fixed R
        # does not; after one quick epoch layer 2 is still close to FA's values, so it is not compared
        assert npr["rel_dist"][-1][1] < 0.6 * fa["rel_dist"][-1][1]
        assert npr["angle_bp_deg"][-1][1] < fa["angle_bp_deg"][-1][1] - 25.0
        assert npr["sign_congruence"][-1][1] > fa["sign_congruence"][-1][1] + 0.1
    assert res["per_seed"][0]["fa"]["test_error"] != res["per_seed"][1]["fa"]["test_error"]  # seeds differ
    # the summary is mean ± sd over every seed's final value (per layer for the feedback metrics)
    for rule in ("bp", "fa", "np"):
        s = res["summary"][rule]
        finals = [ps[rule]["test_error"][-1] for ps in res["per_seed"]]
        assert s["test_error"]["per_seed"] == finals and s["test_error"]["n"] == 2
        assert s["test_error"]["mean"] == pytest.approx(np.mean(finals))
        assert s["test_error"]["sd"] == pytest.approx(np.std(finals, ddof=1))
    assert res["summary"]["bp"]["rel_dist"] is None
    for layer in (0, 1):
        vals = [ps["np"]["sign_congruence"][-1][layer] for ps in res["per_seed"]]
        assert res["summary"]["np"]["sign_congruence"][layer]["mean"] == pytest.approx(np.mean(vals))


def test_fig1_search_uses_only_training_images(shared_data):
    """The search's scores come from held-out training images: it runs with the test set poisoned
    (NaN), and the settings it returns are those of its best validation score."""
    mod = _load("fig1")
    p = {**mod.DEFAULTS, **mod.QUICK, "data_dir": str(shared_data), "search": 3}
    data = mod._data(p)
    poisoned = SimpleNamespace(x_train=data.x_train, y_train=data.y_train,
                               x_test=np.full_like(data.x_test, np.nan), y_test=data.y_test)
    found = mod.search(poisoned, p)
    assert list(found) == ["bp", "fa", "np"]
    for rule, s in found.items():
        assert len(s["points"]) == 3 and set(s["best_params"]) == set(mod.SEARCHED[rule])
        scores = [pt["score"] for pt in s["points"]]
        assert all(0.0 <= x <= 1.0 for x in scores if math.isfinite(x)), rule
        assert s["best"] == int(np.argmin(scores)) and s["best_params"] == s["points"][s["best"]]["params"]
        assert len({pt["params"]["lr"] for pt in s["points"]}) == 3
    assert min(s["points"][s["best"]]["score"] for s in found.values()) < 0.7  # something learned


def test_fig1_quick_search_end_to_end(tmp_path, shared_data):
    mod = _load("fig1")
    assert mod.main(["--quick", "--search", "2", "--out", str(tmp_path), "--data-dir", str(shared_data)]) == 0
    res = json.loads((tmp_path / "fig1.json").read_text())
    for rule in ("bp", "fa", "np"):
        s = res["search"][rule]
        assert res["settings"][rule] == {**mod.DEFAULTS["settings"][rule], **s["points"][s["best"]]["params"]}
    assert res["seeds"] == [0] and res["summary"]["np"]["test_error"]["n"] == 1


@pytest.mark.parametrize("argv", [["--search", "-1"], ["--epochs", "0"], ["--search-epochs", "0"], ["--seeds", "0"]])
def test_fig1_bad_options(argv, tmp_path):
    mod = _load("fig1")
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as e:
        mod.main(argv + ["--out", str(tmp_path)])
    assert e.value.code == 2


# ------------------------------------------------------------------------------------ Fig. 2
def test_fig2_quick(tmp_path, shared_data, monkeypatch):
    mod = _load("fig2")
    simulate, seen = mod.simulate, {}
    monkeypatch.setattr(mod, "simulate", lambda p, on_seed=None: seen.setdefault("res", simulate(p, on_seed)))
    assert mod.main(["--quick", "--seeds", "2", "--out", str(tmp_path), "--data-dir", str(shared_data)]) == 0
    res = seen["res"]
    assert (tmp_path / "fig2.png").stat().st_size > 0
    slim = json.loads((tmp_path / "fig2.json").read_text())
    assert slim["summary"] == json.loads(json.dumps(res["summary"])) and slim["runs"] == {}  # no latent in the JSON
    rules = mod.DEFAULTS["rules"]
    assert slim["seeds"] == [0, 1] and all(list(ps) == rules for ps in slim["per_seed"])
    n_test, n_evals = mod.QUICK["n_test"], mod.QUICK["epochs"] * mod.QUICK["evals_per_epoch"] + 1
    baseline = _mean_image_loss(shared_data, mod.QUICK["n_train"], n_test)
    assert slim["mean_image_loss"] == pytest.approx(baseline, rel=1e-5)
    for ps in slim["per_seed"]:
        for rule in rules:
            r = ps[rule]
            assert len(r["epoch"]) == len(r["train_loss"]) == len(r["test_loss"]) == n_evals
            assert all(_finite(v) for v in r["train_loss"] + r["test_loss"])
            # from random weights (≈ 2.3× the mean-image loss) every rule at least learns the mean image
            assert r["test_loss"][0] > 2.0 * baseline
            assert r["test_loss"][-1] < 1.1 * baseline, rule
        assert ps["fa"]["test_loss"][0] == ps["np"]["test_loss"][0] == ps["urfb"]["test_loss"][0]
    for rule in rules:
        s = slim["summary"][rule]["test_loss"]
        finals = [ps[rule]["test_loss"][-1] for ps in slim["per_seed"]]
        assert s["per_seed"] == finals and s["n"] == 2 and s["mean"] == pytest.approx(np.mean(finals))
        z = np.asarray(res["runs"][rule]["latent"])
        assert z.shape == (n_test, 2) and np.isfinite(z).all() and np.abs(z).max() <= 1.0  # tanh units
    # learning the output bias alone would also reach the mean-image loss; the encoder must have moved:
    # the 2-unit latent against the same network untrained (epochs = 0)
    untrained = simulate({**mod.QUICK, "data_dir": str(shared_data), "epochs": 0})
    for rule in rules:
        z0 = np.asarray(untrained["runs"][rule]["latent"])
        z = np.asarray(res["runs"][rule]["latent"])
        assert np.linalg.norm(z - z0) > 0.1 * np.linalg.norm(z0), rule


def test_fig2_adam_search_quick(tmp_path, shared_data):
    """Adam with a per-rule search: the chosen rate is the best validation point's, η_B/η is not
    searched under Adam, and BP gets below the mean-image loss."""
    mod = _load("fig2")
    argv = ["--quick", "--optimizer", "adam", "--search", "2", "--rules", "bp", "np", "--out", str(tmp_path),
            "--data-dir", str(shared_data)]
    assert mod.main(argv) == 0
    res = json.loads((tmp_path / "fig2.json").read_text())
    assert res["params"]["optimizer"] == "adam" and list(res["search"]) == ["bp", "np"]
    assert set(res["search"]["np"]["best_params"]) == {"lr", "c_h"}
    for rule, s in res["search"].items():
        scores = [pt["score"] for pt in s["points"]]
        assert s["best"] == int(np.argmin(scores))
        assert res["settings"][rule] == {**mod.DEFAULTS["settings"]["adam"][rule], **s["best_params"]}
        lo, hi = mod.DEFAULTS["space"]["adam"]["lr"]
        assert lo <= res["settings"][rule]["lr"] <= hi
    assert res["summary"]["bp"]["test_loss"]["mean"] < 0.95 * res["mean_image_loss"]


@pytest.mark.parametrize("argv", [["--optimizer", "rmsprop"], ["--rules", "bp", "dfa"], ["--rules", "bp", "bp"],
                                  ["--search", "-2"]])
def test_fig2_bad_options(argv, tmp_path):
    mod = _load("fig2")
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as e:
        mod.main(argv + ["--out", str(tmp_path)])
    assert e.value.code == 2


def test_fig2_fa_fails_through_the_bottleneck(shared_data):
    """Fig. 2's FA-vs-BP claim at reduced size (plain SGD): through the 2-unit layer BP (and the
    'matching' rule, whose R tracks Wᵀ) get well below the mean-image loss, FA stays clearly above them.

    NP is left out: at this size it does not beat FA here.
    """
    mod = _load("fig2")
    p = {"data_dir": str(shared_data), "n_train": 6000, "n_test": 500, "epochs": 2, "rules": ["bp", "fa", "urfb"]}
    res = mod.simulate(p)
    s = {k: v["test_loss"]["mean"] for k, v in res["summary"].items()}
    baseline = res["mean_image_loss"]
    assert baseline == pytest.approx(_mean_image_loss(shared_data, p["n_train"], p["n_test"]), rel=1e-5)
    assert s["bp"] < 0.9 * baseline
    assert s["bp"] < s["fa"] - 1.0
    assert s["urfb"] < s["fa"] - 0.4


@pytest.mark.parametrize("name", ["fig1", "fig2"])
def test_a_rules_search_points_do_not_depend_on_the_other_rules(name, monkeypatch):
    """NP searched alone draws the points it draws beside BP and FA (the seed follows the rule, not
    its place in --rules)."""
    mod = _load(name)
    monkeypatch.setattr(mod.P, "validation_split", lambda data, *a, **k: (data, {}))
    monkeypatch.setattr(mod.P, "random_search", lambda space, n, score, seed=0: {"seed": seed})
    drawn = {}
    p = {**mod.DEFAULTS, "search": 2, **({"optimizer": "sgd"} if name == "fig2" else {})}
    for rules in (["np"], ["bp", "fa", "np"], ["np", "bp"]):
        drawn[tuple(rules)] = mod.search(None, {**p, "rules": rules})["np"]
    assert len({d["seed"] for d in drawn.values()}) == 1
