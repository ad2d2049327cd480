"""The Brian2 DI circuits (circuits.controller) against their numpy/torch Euler twin and eq. 10."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.brian2

from brian2 import ms  # noqa: E402

from plasticity import NDI  # noqa: E402
from plasticity.inversion import loop_feedback, simulate, simulate_loop, simulate_repeat, stabilize_loop  # noqa: E402


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.fixture(scope="module")
def mats():
    rng = np.random.default_rng(0)
    W = rng.uniform(-0.5, 0.5, (6, 9))
    return W, -W.T.copy(), 0.5 * rng.normal(size=(2, 6)), rng


@pytest.mark.parametrize("arch, g", [("controller", "linear"), ("controller", "tanh"), ("expanding", "tanh")])
def test_algorithm_1_brian2_equals_torch_euler(mats, arch, g):
    from circuits.controller import build_controller

    W, B, t, _ = mats
    steps = 150
    c = build_controller(W, B, t, g, 0.1, 0.1 * ms, architecture=arch).run(steps)
    sol = simulate(torch.tensor(W), torch.tensor(B), torch.tensor(t), g, 0.1, 0.1, 0.0, steps,
                   architecture=arch, record=True)
    ctrl, key = ("u1", "u") if arch == "controller" else ("readout1", "readout")
    assert c.trajectory("delta0").shape == (steps, 2, 9)
    assert _rel(c.trajectory("delta0"), sol.trajectory["delta"][:steps].numpy()) < 1e-9
    assert _rel(c.trajectory(ctrl), sol.trajectory[key][:steps].numpy()) < 1e-9
    # the handle holds real Brian2 objects
    import brian2

    assert isinstance(c.network, brian2.Network) and isinstance(c.groups["delta0"], brian2.NeuronGroup)


def test_repeat_and_single_loop_brian2_equal_euler(mats):
    from circuits.controller import build_repeat, build_single_loop

    _, _, _, rng = mats
    W2, W3 = rng.uniform(-.5, .5, (7, 9)), rng.uniform(-.5, .5, (5, 7))
    t = 0.3 * rng.normal(size=(2, 5))
    gs, steps = ["tanh", "tanh"], 120
    c = build_repeat([W2, W3], [-W2.T, -W3.T], t, gs, 0.1, 0.1 * ms).run(steps)
    sol = simulate_repeat([W2, W3], [-W2.T, -W3.T], t, gs, 0.1, 0.1, 0.0, steps, record=True)
    for k in (1, 2):
        assert _rel(c.trajectory(f"delta{k}"), sol.trajectory[f"delta{k}"][:steps]) < 1e-9
    B, _ = stabilize_loop([W2, W3], loop_feedback([None, -W2.T, -W3.T]), 0.1)
    c = build_single_loop([W2, W3], B, t, gs, 0.1, 0.1 * ms).run(steps)
    sol = simulate_loop([W2, W3], B, t, gs, 0.1, 0.1, 0.0, steps, record=True)
    for k in (1, 2):
        assert _rel(c.trajectory(f"delta{k}"), sol.trajectory[f"delta{k}"][:steps]) < 1e-9
    assert _rel(c.trajectory("u3"), sol.trajectory["u"][:steps]) < 1e-9


@pytest.mark.parametrize("arch", ["controller", "expanding"])
def test_circuit_steady_state_is_ndi(mats, arch):
    from circuits.controller import build_controller

    W, B, t, _ = mats
    c = build_controller(W, B, t, "linear", 0.1, 0.2 * ms, architecture=arch, record=False).run(2000)
    assert _rel(c.state("delta0"), t @ NDI(alpha=0.1).operator(W, B).T) < 1e-6
