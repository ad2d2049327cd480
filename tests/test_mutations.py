"""Mutation tests of the cross-checks: perturb the code a check is meant to verify and the check must fail.

Each case monkeypatches one piece of code under test — ×1.01 on a rule's operator or increment, a
1 % factor or a flipped sign inside a Brian2 equation string, a 1 % error in a step — runs the
registered check at the smallest sizes its options allow, and asserts that at least one row no
longer passes.  Equation strings are patched by exact substring replacement; if the circuit's text
changes the replacement fails loudly (update the mutation here together with the circuit).

Covered (check → mutation):

* ``engine-fa-transpose-is-bp`` — ``FA.propagate``/``FA.operator`` × 1.01.
* ``engine-online-urfb`` — ``URFB.feedback_increment`` (and the mirrored form) × 1.01; separately
  ``URFB.propagate`` × 1.01.
* ``amit-output-error`` — the reading rule of the output circuit × 1.01 (``circuits.amit.OUTPUT_T_HALFSTEP``).
* ``amit-feedback-gate`` — the gated unit's output × 1.01 (``circuits.amit.GATE``).
* ``amit-layered-mnist`` — the Hebbian increment of the mirrored synapses × 1.01; separately the sign of
  the feedback increment flipped (``circuits.amit.MIRRORED_HEBB``).
* ``amit-layered-mnist-1000`` — the same Hebbian ×1.01 (run at 64-30-10; only the size differs).
* ``di-brian2-euler`` — the controller leak ``−α u`` × 1.01 (``circuits.controller.EQ_CONTROLLER``).
* ``di-steady-ndi`` — ``NDI.operator`` × 1.01 (the closed form eq. 10 the dynamics must reach).
* ``di-steady-tanh`` — the Newton fixed point (``plasticity.inversion.steady_state``) × 1.01.
* ``di-expm`` and ``di-euler-order`` — the S9 system matrix × 1.01 (``system_matrix``), i.e. the
  dynamics the Euler integrator is compared with.
* ``recirculation-circuit`` / ``recirculation-circuit-rf`` — the B plasticity × 1.01
  (``circuits.recirculation.B_PLASTICITY``).
* ``np-circuit`` — the least-squares R plasticity × 1.01 (``circuits.node_perturbation.R_PLASTICITY``).
* ``np-torch-step`` / ``rf-torch-step`` — the engine's feedback gradient × 1.01 (``NPEngine``/``RFEngine``).
* ``rf-exact-closed-form`` — ``RFExact.propagate``/``RFExact.operator`` × 1.01.

Not covered, and why:

* ``di-steady-ndi`` with a mutation of the Euler integrator itself is not run separately: the
  Brian2 row and the Euler rows share the closed-form reference that the ``NDI.operator`` case perturbs.
"""

from __future__ import annotations

import numpy as np
import pytest

import plasticity as P
from bridge.app import registry
from bridge.app.registry import CheckOptions

registry.load(registry.CHECK_MODULES)

SCALE = 1.01


def _scale_method(monkeypatch, cls, name):
    orig = getattr(cls, name)

    def scaled(self, *a, **kw):
        out = orig(self, *a, **kw)
        return None if out is None else SCALE * out

    monkeypatch.setattr(cls, name, scaled)


def _scale_function(monkeypatch, module, name):
    orig = getattr(module, name)

    def scaled(*a, **kw):
        return SCALE * orig(*a, **kw)

    monkeypatch.setattr(module, name, scaled)


def _edit_string(monkeypatch, module, name, old, new):
    text = getattr(module, name)
    assert old in text, f"{module.__name__}.{name} no longer contains {old!r}: update this mutation"
    monkeypatch.setattr(module, name, text.replace(old, new))


def _run(name, **opts):
    rows = registry.CHECKS[name](CheckOptions(quiet=True, **opts))
    assert rows
    return rows


def _assert_caught(name, **opts):
    rows = _run(name, **opts)
    failed = [r for r in rows if not r.passed]
    assert failed, f"check {name} still passes under the mutation: {[r.as_dict() for r in rows]}"


# ----------------------------------------------------------------------------------------- mutations


def _m_fa(mp):
    _scale_method(mp, P.FA, "propagate")
    _scale_method(mp, P.FA, "operator")


def _m_urfb_increment(mp):
    _scale_method(mp, P.URFB, "feedback_increment")
    _scale_method(mp, P.URFB, "feedback_increment_from_weight")


def _m_urfb_propagate(mp):
    _scale_method(mp, P.URFB, "propagate")


def _m_output_read(mp):
    import circuits.amit as CA

    _edit_string(mp, CA, "OUTPUT_T_HALFSTEP", "read = off*delta", "read = off*1.01*delta")


def _m_gate(mp):
    import circuits.amit as CA

    _edit_string(mp, CA, "GATE", "{out} = z*int", "{out} = 1.01*z*int")


def _m_hebb_scale(mp):
    import circuits.amit as CA

    _edit_string(mp, CA, "MIRRORED_HEBB", "dw = eta*", "dw = 1.01*eta*")


def _m_hebb_feedback_sign(mp):
    import circuits.amit as CA

    _edit_string(mp, CA, "MIRRORED_HEBB", "r += epsilon", "r -= epsilon")


def _m_controller_leak(mp):
    import circuits.controller as CC

    _edit_string(mp, CC, "EQ_CONTROLLER", "-alpha*u", "-1.01*alpha*u")


def _m_ndi_operator(mp):
    _scale_method(mp, P.NDI, "operator")


def _m_newton(mp):
    import bridge.checks.inversion as BI

    _scale_function(mp, BI, "steady_state")


def _m_system_matrix(mp):
    import bridge.checks.inversion as BI
    import plasticity.inversion as PI

    _scale_function(mp, PI, "system_matrix")
    mp.setattr(BI, "system_matrix", PI.system_matrix)


def _m_recirc_B(mp):
    import circuits.recirculation as CR

    _edit_string(mp, CR, "B_PLASTICITY", "eta_B *", "1.01 * eta_B *")


def _m_np_R(mp):
    import circuits.node_perturbation as CN

    _edit_string(mp, CN, "R_PLASTICITY", "eta *", "1.01 * eta *")


def _m_np_engine(mp):
    from bridge.engines import NPEngine

    _scale_method(mp, NPEngine, "feedback_grad")


def _m_rf_engine(mp):
    from bridge.engines import RFEngine

    _scale_method(mp, RFEngine, "feedback_grad")


def _m_rf_exact(mp):
    from plasticity.learned_feedback import RFExact

    _scale_method(mp, RFExact, "propagate")
    _scale_method(mp, RFExact, "operator")


SMALL_LAYERED = {"sizes": (64, 30, 10), "examples": 5}

def _m_conv_signal(mp):
    from bridge.conv import FeedbackConv2d

    _scale_method(mp, FeedbackConv2d, "_input_grad")


def _m_local_weight(mp):
    from bridge.conv import LocallyConnected2d

    _scale_method(mp, LocallyConnected2d, "_weight_grad")


def _m_local_forward(mp):
    from bridge.conv import LocallyConnected2d

    _scale_method(mp, LocallyConnected2d, "_forward")


CASES = [
    ("conv-fa-transpose-is-bp", _m_conv_signal, {}),
    ("conv-urfb-stays-bp", _m_urfb_increment, {}),
    ("local-untied-rule", _m_local_weight, {}),
    ("local-shared-is-conv", _m_local_forward, {}),
    ("engine-fa-transpose-is-bp", _m_fa, {"sizes": (8, 6, 4)}),
    ("engine-online-urfb", _m_urfb_increment, {"sizes": (64, 30, 10), "examples": 10}),
    ("engine-online-urfb", _m_urfb_propagate, {"sizes": (64, 30, 10), "examples": 10}),
    ("amit-output-error", _m_output_read, {}),
    ("amit-feedback-gate", _m_gate, {}),
    ("amit-layered-mnist", _m_hebb_scale, SMALL_LAYERED),
    ("amit-layered-mnist", _m_hebb_feedback_sign, SMALL_LAYERED),
    ("amit-layered-mnist-1000", _m_hebb_scale, SMALL_LAYERED),
    ("di-brian2-euler", _m_controller_leak, {}),
    ("di-steady-ndi", _m_ndi_operator, {}),
    ("di-steady-tanh", _m_newton, {}),
    ("di-expm", _m_system_matrix, {}),
    ("di-euler-order", _m_system_matrix, {}),
    ("recirculation-circuit", _m_recirc_B, {"examples": 10}),
    ("recirculation-circuit-rf", _m_recirc_B, {"examples": 10}),
    ("np-circuit", _m_np_R, {"examples": 10}),
    ("np-torch-step", _m_np_engine, {}),
    ("rf-torch-step", _m_rf_engine, {}),
    ("rf-exact-closed-form", _m_rf_exact, {}),
]

#: checks deliberately left out of CASES (see the module docstring): the spiking checks have their
#: mutations next to them in tests/test_spiking.py (a flipped counting synapse, an excitatory v, an
#: anti-Hebbian term, a 1.05× feedback increment, W × 1.1, a decoder ignoring the window)
NOT_COVERED: set[str] = {"spiking-output-error", "spiking-feedback-gate", "spiking-hebbian", "spiking-controller",
                         "spiking-convergence"}


@pytest.mark.parametrize("name,mutate,opts", CASES, ids=[f"{n}:{m.__name__[3:]}" for n, m, _ in CASES])
def test_check_fails_under_mutation(monkeypatch, name, mutate, opts):
    # unmutated, the check passes at this size (so the failure below is the mutation's doing)
    if name not in _PASSED_UNMUTATED:
        rows = _run(name, **opts)
        assert all(r.passed for r in rows), [r.as_dict() for r in rows if not r.passed]
        _PASSED_UNMUTATED.add(name)
    mutate(monkeypatch)
    _assert_caught(name, **opts)


_PASSED_UNMUTATED: set = set()


def test_every_registered_check_has_a_mutation():
    covered = {n for n, _, _ in CASES}
    assert set(registry.CHECKS) - NOT_COVERED <= covered, sorted(set(registry.CHECKS) - covered - NOT_COVERED)


def test_scaled_method_really_scales(monkeypatch):
    """The helper itself: a scaled FA.propagate returns 1.01× the original."""
    rng = np.random.default_rng(0)
    W, R, d = rng.standard_normal((3, 4)), rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    want = P.FA().propagate(W, R, d)
    _m_fa(monkeypatch)
    np.testing.assert_allclose(P.FA().propagate(W, R, d), SCALE * want, rtol=1e-15)
