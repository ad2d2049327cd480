"""Spiking circuits (circuits.spiking) against their rate twins.

The statistical checks are defined once in bridge.checks.spiking and run here and from
``credit crossval``; the mutation tests perturb the circuit and show that each check then fails.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("brian2")

import brian2 as b2  # noqa: E402

import circuits.spiking as CS  # noqa: E402
from bridge.app.registry import CHECKS, DEMOS, CheckOptions, load  # noqa: E402
from bridge.checks import spiking as SC  # noqa: E402
from circuits._brian import codegen_target  # noqa: E402

pytestmark = [pytest.mark.brian2, pytest.mark.filterwarnings("ignore::DeprecationWarning:pyparsing")]

NAMES = ["spiking-output-error", "spiking-feedback-gate", "spiking-hebbian", "spiking-controller",
         "spiking-convergence"]


def _rows(name):
    return CHECKS[name](CheckOptions(seed=0, quiet=True))


@pytest.mark.parametrize("name", NAMES)
def test_spiking_check_passes(name):
    rows = _rows(name)
    assert rows and all(r.name.startswith("spiking-") for r in rows)
    for r in rows:
        assert r.passed, (r.name, r.max_rel_diff, r.tolerance, r.detail)
        if r.tolerance > 0 and "convergence" not in r.name:  # statistical rows: a derived k·σ, k from Bonferroni
            assert "k = " in r.detail and "P_false" in r.detail
    if name == "spiking-convergence":
        slope = float(rows[0].detail.split("slope ")[1].split(" ")[0])
        assert abs(slope + 0.5) <= 0.1 and rows[0].tolerance == 0.1


def test_crossval_cli_lists_and_runs_a_spiking_row(tmp_path):
    from bridge.app.cli import main

    path = tmp_path / "x.json"
    rc = main(["crossval", "--only", "spiking-feedback-gate", "--json", str(path), "--quiet"])
    rows = json.loads(path.read_text())["checks"]
    assert rc == 0 and len(rows) == 2 and all(r["passed"] for r in rows)
    load(["bridge.checks.spiking"])
    assert set(NAMES) <= set(CHECKS)
    assert {"spiking-output-error", "spiking-controller", "spiking-hebbian"} <= set(DEMOS)


# --------------------------------------------------------------------------------- mutations
def test_output_check_fails_when_the_t_feedback_sign_is_flipped(monkeypatch):
    monkeypatch.setattr(CS, "COUNT_T_ON_PRE", "acc_post -= sgn_pre*wdec")
    rows = _rows("spiking-output-error")
    assert not all(r.passed for r in rows)
    assert not next(r for r in rows if "δ windows" in r.name).passed


def test_gate_check_fails_when_v_excites_instead_of_inhibits(monkeypatch):
    # the control pair's OFF population codes −v: counting it with its sign lets v open the gate
    monkeypatch.setattr(CS, "SHUT_ON_PRE", "acc_post += sgn_pre*wdec")
    rows = _rows("spiking-feedback-gate")
    assert [r.passed for r in rows] == [True, False]


def test_hebbian_checks_fail_for_an_anti_hebbian_post_term_and_a_1_05_feedback(monkeypatch):
    monkeypatch.setattr(CS, "HEBB_ON_POST", "apost += 1\ndw = -s*A*apre\nw += dw\nr += epsilon*dw")
    monkeypatch.setattr(CS, "HEBB_ON_PRE", "apre += 1\ndw = s*A*apost\nw += dw\nr += 1.05*epsilon*dw")
    dw_row, dr_row = _rows("spiking-hebbian")
    assert not dw_row.passed and not dr_row.passed


def test_controller_check_fails_when_w_is_scaled(monkeypatch):
    monkeypatch.setattr(CS, "CTRL_FF_ON_PRE", "u_post += 1.1*w*sgn_pre/(n_per*nu_src*tau)")
    rows = _rows("spiking-controller")
    assert not rows[0].passed and not rows[1].passed


def test_convergence_check_fails_when_the_decoder_ignores_the_window(monkeypatch):
    # a decoder that normalises every count by the shortest window: the error then grows with T
    real = CS.decode_windows
    monkeypatch.setattr(CS, "decode_windows", lambda c, n, k, nu, T: real(c, n, k, nu, 50 * b2.ms))
    (row,) = _rows("spiking-convergence")
    assert not row.passed


# ------------------------------------------------------------------------ circuits and handles
def test_on_off_decoding():
    counts = np.array([[3, 1, 0, 0, 0, 2, 1, 1]], dtype=float)  # 2 units × (ON, OFF) × 2 neurons
    x = CS.decode_windows(counts, 2, 2, 10.0 * b2.Hz, 100 * b2.ms)
    assert np.allclose(x, [[(4 - 0) / 2.0, (2 - 2) / 2.0]])


def test_output_regimes_visible_in_population_rates():
    p = SC.PA.OutputErrorParams(**SC.OUT_PARAMS)
    h = np.array([[0.5, -2.0], [-0.5, 2.0]])
    labels = np.array([0, 1])
    c = CS.SpikingOutputError(h, labels, p, n_cycles=3, n_per=20, nu=100 * b2.Hz, nu_t=200 * b2.Hz,
                              window=50 * b2.ms, seed=1).run()
    on = c.rates("delta")[0::2, ..., 0] / 100.0  # ON rate per δ window, in units of ν
    off = c.rates("delta")[0::2, ..., 1] / 100.0
    # constant 1 (class, h ≤ 1) and constant −μ (wrong class, h ≥ −1): every δ window
    assert np.all(np.abs(on[:, 0, 0] - 1) < 0.3) and np.all(off[:, 0, 0] == 0)
    assert np.all(np.abs(off[:, 1, 0] - p.mu) < 0.3) and np.all(on[:, 1, 0] == 0)
    # oscillation through 0: 1+ε, 0, 1+ε (class, h > 1) and −μ−ε, 0, −μ−ε (wrong class, h < −1)
    assert np.abs(on[0, 1, 1] - 2.0) < 0.4 and on[1, 1, 1] == 0 and np.abs(on[2, 1, 1] - 2.0) < 0.4
    assert np.abs(off[0, 0, 1] - 1.5) < 0.4 and off[1, 0, 1] == 0 and np.abs(off[2, 0, 1] - 1.5) < 0.4
    assert np.all(np.abs(c.signal() - SC.P.Hinge(p.mu).teaching(h, labels)) < 0.3)


def test_handles_hold_brian2_objects_and_two_circuits_share_one_network():
    a = CS.SpikingShutdown([1.0, -1.5], [0.0, 2.0], K=4.0, n_per=10, window=40 * b2.ms, name="left", seed=2)
    b = CS.SpikingShutdown([0.5, 2.0], [0.0, -2.0], K=8.0, n_per=10, window=40 * b2.ms, name="right", seed=3)
    assert isinstance(a.network, b2.Network) and isinstance(a.gated_pop, b2.NeuronGroup)
    assert isinstance(a.synapses["control_to_gated"], b2.Synapses)
    assert a.gated_pop.name == "left_gated" and b.gated_pop.name == "right_gated"
    assert "not_refractory" in a.gated_pop.variables and "v -= theta" in a.gated_pop.event_codes["spike"]
    rate = b2.PopulationRateMonitor(a.gated_pop, name="left_rate")
    net = b2.Network(*a.network.objects, *b.network.objects, rate)
    b2.seed(0)
    with codegen_target("numpy"):
        net.run(80 * b2.ms, namespace={})  # each object carries its own namespace (K differs)
    a.windows_run = b.windows_run = 2
    ca, ga = a.decoded()
    cb, gb = b.decoded()
    assert ca[0] == 0 and ca[1] > 0.5 and ga[1] == 0 and ga[0] > 0.5
    assert cb[0] == 0 and cb[1] < -0.5 and gb[1] == 0 and gb[0] > 0.2
    assert len(rate.rate) == int(round(80 / 0.25))


def test_mirrored_synapses_are_one_object_carrying_w_and_r():
    c = CS.SpikingHebbian([1.0], [-1.0], eta=0.1, n_per=5, window=50 * b2.ms, dt=0.5 * b2.ms)
    assert {"w", "r", "apre", "apost"} <= set(c.synapses.variables)
    assert "r += epsilon*dw" in c.synapses.pre.code and "r += epsilon*dw" in c.synapses.post.code
    c.run()
    W, R = c.weights()
    assert W[0, 0] < 0 and R[0, 0] == W[0, 0]  # post × pre < 0, and the mirror moved identically


def test_controller_noise_theory_is_self_consistent():
    W, B, t = SC._ctrl_setup(0)
    c = CS.SpikingController(W, B, t, 0.2, n_per=10)
    nz = c.noise(1 * b2.second)
    A = np.block([[np.eye(5), -B], [-W, 0.2 * np.eye(3)]])
    assert np.allclose(A @ nz.fixed_point, np.concatenate([np.zeros(5), -t]))
    # four times the neurons halve the decoding error (counting statistics; not exactly, since the
    # node fluctuations through 0, which raise E|x| above |x*|, shrink too)
    c4 = CS.SpikingController(W, B, t, 0.2, n_per=40)
    assert np.allclose(c4.noise(1 * b2.second).window_std, nz.window_std / 2, rtol=0.1)
    assert np.all(c4.noise(1 * b2.second).window_std <= nz.window_std / 2 * (1 + 1e-9))


def test_output_error_demo_saves_plot(tmp_path):
    paths = DEMOS["spiking-output-error"](tmp_path, 0)
    assert paths and all(p.exists() and p.stat().st_size > 10_000 for p in paths)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spiking-controller", "spiking-hebbian"])
def test_other_demos_save_plots(tmp_path, name):
    paths = DEMOS[name](tmp_path, 0)
    assert paths and all(p.exists() for p in paths)


@pytest.mark.slow
def test_cython_target_gives_the_same_spikes_as_numpy():
    # compiles once (~1 min), then Brian2's cache in ~/.cython/brian_extensions serves it
    out = []
    for target in ("cython", "numpy"):
        c = CS.SpikingShutdown([1.0, -1.5, 0.5], [0.0, 2.0, -3.0], K=4.0, n_per=10, window=40 * b2.ms, target=target,
                               name="cy").run()
        out.append(np.concatenate(c.decoded()))
    assert np.array_equal(out[0], out[1])


def test_spiking_layered_learns_with_mirrored_increments():
    from bridge.data import digits
    from circuits.spiking_layered import SpikingLayered

    data = digits(seed=0)
    W0, R0, _, _ = SC.PA.random_init((64, 30, 10), np.random.default_rng(1))
    c = SpikingLayered((64, 30, 10), [w.copy() for w in W0], [r.copy() for r in R0], eta=0.02, seed=0, chunk=4)
    h = c.train(data.x_train[:4].astype(float), data.y_train[:4])
    Ws, Rs = c.weights()
    assert h.shape == (4, 10)
    for W, R, Wi, Ri in zip(Ws, Rs, W0, R0):
        assert np.linalg.norm(W - Wi) / np.linalg.norm(Wi) > 0.01  # the weights moved
        # URFB: both weights received the same increments, so R − Wᵀ is unchanged (to round-off)
        assert np.max(np.abs((R - W.T) - (Ri - Wi.T))) < 1e-12


@pytest.mark.slow
def test_spiking_layered_digits_error_beside_the_rate_circuit():
    res = SC.layered_digits(0)
    assert res["spiking"][-1] < res["spiking"][0] - 0.25  # learns: test error falls by > 25 points
    assert abs(res["spiking"][-1] - res["rate"][-1]) < 0.15
