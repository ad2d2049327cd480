"""circuits.amit (Brian2) against its matrix twins and against the paper's equations (Amit 2021).

Tolerances: the output error and shut-down circuits are discrete maps of exact values, so they
must agree with eq. 6 / eq. 3 *exactly* (max abs diff == 0).  The layered circuit sums synaptic
inputs in a different order than numpy's matmul, so it is compared in float64 to a max relative
difference ≤ 1e-9 (observed ~1e-16).  All runs use the numpy code-generation target.
"""

import numpy as np
import pytest

pytest.importorskip("brian2")

import plasticity as P  # noqa: E402
from circuits import amit as CA  # noqa: E402
from circuits._brian import codegen_target, get_feedback, get_weights, quiet_brian, set_feedback, set_weights  # noqa: E402
from plasticity import amit as PA  # noqa: E402

pytestmark = [pytest.mark.brian2, pytest.mark.filterwarnings("ignore::DeprecationWarning:pyparsing")]
quiet_brian()

REL_TOL = 1e-9  # layered circuit vs matrix twin, float64


def _rel(As, Bs):
    """Largest over matrices of max|A − B| / max|B|."""
    return max(float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) for a, b in zip(As, Bs))


# ----------------------------------------------------------------------------------------------
# a. output error circuit
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mu", [1.0, 0.3])
def test_output_circuit_equals_eq6_on_random_inputs(mu):
    rng = np.random.default_rng(0)
    p = PA.OutputErrorParams(M=4.0, S=1.0, mu=mu, epsilon=0.25)
    h = rng.uniform(-3.99, 3.99, size=(60, 5))
    labels = rng.integers(0, 5, size=60)
    signal, trace = CA.output_error_signal(h, labels, p, n_cycles=4)
    want = P.Hinge(mu).teaching(h, labels)
    assert np.max(np.abs(signal - want)) == 0.0
    # the reading rule gives eq. 6 in *every* cycle, not only the last one
    assert all(np.max(np.abs(r - want)) == 0.0 for r in trace.reads())
    # and the circuit is the twin's discrete map, half-step by half-step
    twin = PA.output_error_twin(h, labels, p, n_cycles=4)
    for name in ("delta", "tc", "read"):
        assert np.array_equal(getattr(trace, name), getattr(twin, name)), name
    assert {"constant", "oscillating"} == set(np.unique(CA.output_regimes(trace)))


def test_output_circuit_equals_eq6_on_boundaries_for_both_class_roles():
    p = PA.OutputErrorParams(M=4.0, S=1.0, mu=0.5, epsilon=0.5)
    # thresholds exactly (h = ±1 = ±S), values just off them, the bound region, 0
    values = np.array([-1.0, 1.0, 0.0, -1.0 - 1e-12, -1.0 + 1e-12, 1.0 - 1e-12, 1.0 + 1e-12,
                       2.0, -2.0, 3.999, -3.999, 4.0 - 1e-9, -4.0 + 1e-9])
    # (within ulp(3M) of ±S or ±M the neuron's summed input h + 2Ms rounds; see read_output_signal)
    C = 3
    h = np.repeat(values[:, None], C, axis=1)
    for cls in range(C):  # every value seen by the presented class and by the other classes
        labels = np.full(len(values), cls)
        signal, trace = CA.output_error_signal(h, labels, p, n_cycles=3)
        want = P.Hinge(0.5).teaching(h, labels)
        assert np.max(np.abs(signal - want)) == 0.0
        assert all(np.max(np.abs(r - want)) == 0.0 for r in trace.reads())
    # the exact thresholds land on the learning side (eq. 6 uses ≤ 1 and ≥ −1)
    s, _ = CA.output_error_signal(np.array([[1.0, -1.0]]), np.array([0]), p)
    assert s.tolist() == [[1.0, -0.5]]


def test_output_circuit_general_threshold_S():
    p = PA.OutputErrorParams(M=8.0, S=2.5, mu=0.75, epsilon=1.0)
    values = np.array([-2.5, 2.5, -1.0, 1.0, 0.0, 2.6, -2.6, 2.4, -2.4, 7.5, -7.5])
    h = np.repeat(values[:, None], 2, axis=1)
    for cls in (0, 1):
        labels = np.full(len(values), cls)
        signal, _ = CA.output_error_signal(h, labels, p, n_cycles=2)
        assert np.max(np.abs(signal - PA.hinge_signal(h, labels, mu=0.75, S=2.5))) == 0.0


def test_output_circuit_shows_all_regimes():
    mu, eps = 0.5, 0.25
    p = PA.OutputErrorParams(M=4.0, S=1.0, mu=mu, epsilon=eps)
    # class 0 presented twice; column 0 is the presented class, column 1 another class
    h = np.array([[0.5, -0.5],    # class h ≤ S: learn (δ = 1);   other h ≥ −S: learn (δ = −μ)
                  [2.0, -2.0]])   # class h > S: hold;            other h < −S: hold
    _, trace = CA.output_error_signal(h, np.array([0, 0]), p, n_cycles=4)
    d = trace.delta[0::2]  # δ after each δ half-step, (cycle, n, C)
    t = trace.tc[1::2]     # t after each t half-step
    # δ = 1 → t = 0 → δ = 1 and δ = −μ → t = 0 → δ = −μ: constant, t silent
    assert np.all(d[:, 0, 0] == 1.0) and np.all(t[:, 0, 0] == 0.0)
    assert np.all(d[:, 0, 1] == -mu) and np.all(t[:, 0, 1] == 0.0)
    # δ = 1+ε → t = 1 → δ = 0 → t = 0 → δ = 1+ε: oscillation through 0
    assert d[:, 1, 0].tolist() == [1 + eps, 0.0, 1 + eps, 0.0]
    assert t[:, 1, 0].tolist() == [1.0, 0.0, 1.0, 0.0]
    # δ = −μ−ε → t = −1 → δ = 0 → t = 0 → δ = −μ−ε
    assert d[:, 1, 1].tolist() == [-mu - eps, 0.0, -mu - eps, 0.0]
    assert t[:, 1, 1].tolist() == [-1.0, 0.0, -1.0, 0.0]
    assert CA.output_regimes(trace).tolist() == [["constant", "constant"], ["oscillating", "oscillating"]]
    # the raw δ is not eq. 6 while holding; the read is (0 in every cycle)
    assert np.all(trace.reads()[:, 1, :] == 0.0) and np.any(trace.delta[:, 1, :] != 0.0)
    assert np.all(trace.reads()[:, 0, :] == np.array([1.0, -mu]))


def test_output_circuit_rejects_bad_parameters_and_unbounded_h():
    with pytest.raises(ValueError, match="M must lie"):
        PA.OutputErrorParams(M=0.0)
    with pytest.raises(ValueError, match="mu must lie"):
        PA.OutputErrorParams(mu=1.5)
    with pytest.raises(ValueError, match="epsilon must lie"):
        PA.OutputErrorParams(epsilon=0.0)
    with pytest.raises(ValueError, match="S must lie"):
        PA.OutputErrorParams(S=-1.0)
    p = PA.OutputErrorParams(M=4.0)
    # |h| = M is excluded: at h = −M (class) the first input is H = M, at h = M (after t = 1) too
    for bad in (4.0, -4.0, 5.0):
        with pytest.raises(ValueError, match=r"open interval \(-M, M\)"):
            CA.output_error_signal(np.array([[bad, 0.0]]), np.array([0]), p)


# ----------------------------------------------------------------------------------------------
# b. feedback shut-down
# ----------------------------------------------------------------------------------------------


def test_shutdown_circuit_equals_eq3_on_random_and_boundary_inputs():
    rng = np.random.default_rng(1)
    K = 8.0
    a = np.concatenate([rng.uniform(-2.5, 2.5, 200),
                        [1.0, -1.0, np.nextafter(1.0, 0.0), -np.nextafter(1.0, 0.0), 1.5, -1.5, 0.0]])
    delta = rng.uniform(-K, K, a.size)
    delta[-7:] = [3.0, -3.0, 7.5, -8.0, 2.0, -2.0, 1.0]  # −K itself passes; K itself is excluded
    res = CA.feedback_shutdown(delta, a, K)
    want = P.get_transfer("satlin").gate(a) * delta
    assert np.max(np.abs(res.gated - want)) == 0.0
    assert not res.violations.any()
    x = np.clip(a, -1, 1)
    assert np.array_equal(res.u, (x >= 1) * 1.0) and np.array_equal(res.v, -1.0 * (x <= -1))
    # a = ±1 exactly (x = ±1) shuts the feedback down, a just inside passes it
    assert res.gated[-7] == 0.0 and res.gated[-6] == 0.0
    assert res.gated[-5] == 7.5 and res.gated[-4] == -8.0
    twin, _, _ = PA.shutdown_twin(delta, a, K)
    assert np.array_equal(twin, res.gated)
    # both controls push the input *down* (v = −1 carries the sign): no sign error for v
    assert np.all(res.v[a <= -1] == -1.0)


def test_shutdown_bound_violation_is_detected_not_assumed():
    K = 2.0
    # δ = K with the control on: z = K − 2K = −K still passes σ_K, so the circuit would output −K
    with pytest.raises(ValueError, match=r"-K <= delta < K"):
        CA.feedback_shutdown(np.array([K, 0.5]), np.array([1.0, 0.0]), K)
    res = CA.feedback_shutdown(np.array([K, 0.5, 3.0]), np.array([1.0, 0.0, 0.0]), K, on_violation="report")
    assert res.violations.tolist() == [True, False, True]
    assert res.gated[0] == -K  # the failure the check guards against
    with pytest.raises(ValueError, match="K must lie"):
        CA.feedback_shutdown(np.array([0.1]), np.array([0.0]), 0.0)


# ----------------------------------------------------------------------------------------------
# c. mirrored Hebbian synapses
# ----------------------------------------------------------------------------------------------


def test_mirrored_synapses_identical_increments_and_masks():
    rng = np.random.default_rng(2)
    d_pre, d_post, eta = 7, 5, 0.1
    W, R = rng.standard_normal((d_post, d_pre)), rng.standard_normal((d_pre, d_post))
    x, d = rng.uniform(-1, 1, d_pre), rng.standard_normal(d_post)
    W1, R1 = CA.mirrored_update(W, R, x, d, eta=eta, epsilon=1.0)
    dW = W1 - W
    assert np.abs(dW).min() > 0
    assert np.max(np.abs((R1 - R) - (W1 - W).T)) <= 1e-15  # the same increment, transposed
    assert np.max(np.abs(dW - eta * np.outer(d, x))) <= 1e-15
    # from zero weights the two increments are bitwise identical (one product drives both)
    Wz, Rz = CA.mirrored_update(np.zeros_like(W), np.zeros_like(R), x, d, eta=eta, epsilon=1.0)
    assert np.array_equal(Wz, Rz.T) and np.abs(Wz).min() > 0
    W0, R0 = CA.mirrored_update(W, R, x, d, eta=eta, epsilon=0.0)
    assert np.array_equal(R0, R) and np.max(np.abs(W0 - W1)) == 0.0  # FRFB: R unchanged
    # masks (drawn separately for W and R) keep absent connections at zero
    mrng = np.random.default_rng(3)
    wm, rm = P.random_mask(W.shape, 0.5, mrng), P.random_mask(R.shape, 0.5, mrng)
    Wm, Rm = CA.mirrored_update(W * wm, R * rm, x, d, eta=eta, epsilon=1.0, wmask=wm, rmask=rm)
    assert np.all(Wm[wm == 0] == 0) and np.all(Rm[rm == 0] == 0)
    assert np.all(Wm[wm == 1] != (W * wm)[wm == 1]) and np.all(Rm[rm == 1] != (R * rm)[rm == 1])
    tw, tr = PA.mirrored_update(W * wm, R * rm, x, d, eta, 1.0, wm, rm)
    assert _rel([Wm, Rm], [tw, tr]) <= 1e-15


def test_weight_layout_helpers_roundtrip_and_target_is_scoped():
    import brian2 as b2

    rng = np.random.default_rng(4)
    W, R = rng.standard_normal((3, 4)), rng.standard_normal((4, 3))
    pre = b2.NeuronGroup(4, "y : 1\nfb : 1", method="euler")
    post = b2.NeuronGroup(3, "y : 1\na : 1", method="euler")
    S = CA.build_mirrored_synapses(pre, post, W, R)
    assert np.array_equal(np.asarray(S.w[:]), W.T.ravel())  # connect(True) is pre-major
    set_weights(S, 2 * W)
    set_feedback(S, 3 * R)
    assert np.array_equal(get_weights(S), 2 * W) and np.array_equal(get_feedback(S), 3 * R)
    before = b2.prefs.codegen.target
    with codegen_target("numpy"):
        assert b2.prefs.codegen.target == "numpy"
    assert b2.prefs.codegen.target == before
    with pytest.raises(ValueError, match="code-generation target"):
        with codegen_target("gpu"):
            pass


# ----------------------------------------------------------------------------------------------
# d./e. layered circuit vs matrix twin
# ----------------------------------------------------------------------------------------------

SIZES = (20, 15, 10, 4)


def _problem(seed=11, n=20, sparsity=None):
    rng = np.random.default_rng(seed)
    Ws, Rs, wm, rm = PA.random_init(SIZES, rng, scale=1.5, sparsity=sparsity)
    X = rng.standard_normal((n, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], n)
    return Ws, Rs, wm, rm, X, labels


@pytest.mark.parametrize("epsilon,sparsity", [(1.0, None), (0.0, None), (1.0, 0.5)],
                         ids=["urfb", "frfb", "urfb-50%"])
@pytest.mark.parametrize("order", ["after_update", "before_update"])
def test_layered_circuit_equals_matrix_twin(order, epsilon, sparsity):
    Ws, Rs, wm, rm, X, labels = _problem(sparsity=sparsity)
    eta, mu = 0.05, 0.5
    # chunk < n: several Network.run calls, input TimedArrays refilled in place between them
    circ = CA.LayeredCircuit(SIZES, Ws, Rs, eta, epsilon, mu, wmasks=wm, rmasks=rm, feedback_order=order,
                             chunk=7 if sparsity else 256)
    rec = circ.train(X, labels)
    Wc, Rc = circ.weights()
    Wt, Rt, outs, dLs = PA.train_online(Ws, Rs, X, labels, eta=eta, epsilon=epsilon, mu=mu,
                                         wmasks=wm, rmasks=rm, feedback_order=order)
    assert _rel(Wc, Wt) <= REL_TOL and _rel(Rc, Rt) <= REL_TOL
    assert _rel([rec.outputs], [outs]) <= REL_TOL
    assert np.array_equal(rec.deltas, dLs)  # the read δ_L is exact: values in {1, 0, −μ}
    # the run is not trivial: weights moved, both output regimes and both gate states occurred
    assert _rel(Wc, Ws) > 1e-2
    assert np.any(dLs == 0) and np.any(dLs == 1.0) and np.any(dLs == -mu)
    fwd = P.forward(Ws, None, X, PA.default_transfers(3))
    gates = np.concatenate([P.get_transfer("satlin").gate(a).ravel() for a in fwd.As[:-1]])
    assert 0.1 < gates.mean() < 0.9
    if sparsity is not None:
        assert all(np.all(W[m == 0] == 0) for W, m in zip(Wc, wm))
        assert all(np.all(R[m == 0] == 0) for R, m in zip(Rc, rm))
    if epsilon == 0.0:
        assert all(np.array_equal(R, R0) for R, R0 in zip(Rc, Rs))


def test_before_update_order_is_plasticity_sgd_step_and_paper_order_differs():
    Ws, Rs, _, _, X, labels = _problem(seed=12, n=20)
    eta, mu = 0.05, 0.5
    rule, loss, tr = P.URFB(1.0), P.Hinge(mu), PA.default_transfers(3)
    W, R = [w.copy() for w in Ws], [r.copy() for r in Rs]
    for x, c in zip(X, labels):  # batch size 1, straight from plasticity.network
        W, _, R, _, _ = P.sgd_step(rule, W, None, R, x[None], np.array([c]), tr, loss, eta)
    circ = CA.LayeredCircuit(SIZES, Ws, Rs, eta, 1.0, mu, feedback_order="before_update", chunk=6)
    circ.train(X, labels)
    Wc, Rc = circ.weights()
    assert _rel(Wc, W) <= REL_TOL and _rel(Rc, R) <= REL_TOL
    # Fig. 15's order (δ_{l−1} from the updated R_l) is a different algorithm for ε > 0 ...
    Wp, Rp, _, _ = PA.train_online(Ws, Rs, X, labels, eta=eta, epsilon=1.0, mu=mu)
    assert _rel(Wp, W) > 1e-6
    # ... and the same one for ε = 0 (R never changes)
    Wf, _, _, _ = PA.train_online(Ws, Rs, X, labels, eta=eta, epsilon=0.0, mu=mu, feedback_order="after_update")
    Wg, _, _, _ = PA.train_online(Ws, Rs, X, labels, eta=eta, epsilon=0.0, mu=mu, feedback_order="before_update")
    assert _rel(Wf, Wg) == 0.0


def test_layered_circuit_checks_its_bounds():
    Ws, Rs, _, _, X, labels = _problem(seed=13, n=5)
    with pytest.raises(ValueError, match="feedback bound violated"):
        CA.LayeredCircuit(SIZES, Ws, Rs, 0.05, K=1e-3).train(X, labels)
    with pytest.raises(ValueError, match="output bound violated"):
        CA.LayeredCircuit(SIZES, Ws, Rs, 0.05, M=1e-3).train(X, labels)
    with pytest.raises(ValueError, match="seed"):
        CA.LayeredCircuit(SIZES, eta=0.05)
    with pytest.raises(ValueError, match="epsilon must lie"):
        CA.LayeredCircuit(SIZES, Ws, Rs, 0.05, epsilon=2.0)


def test_layered_circuit_learns_a_separable_problem():
    rng = np.random.default_rng(3)
    C, d = 4, SIZES[0]
    protos = rng.standard_normal((C, d))
    labels = np.tile(np.arange(C), 10)
    rng.shuffle(labels)
    X = protos[labels] + 0.3 * rng.standard_normal((len(labels), d))
    circ = CA.LayeredCircuit(SIZES, eta=0.02, epsilon=1.0, mu=0.5, seed=5)
    W0, R0 = circ.weights()
    loss0, acc0 = circ.evaluate(X, labels)
    for _ in range(4):
        circ.train(X, labels)
    loss1, acc1 = circ.evaluate(X, labels)
    W1, R1 = circ.weights()
    assert loss1 < loss0 / 10, (loss0, loss1)  # observed 2.71 → 0.04
    assert acc1 >= 0.95 > acc0
    assert _rel(W1, W0) > 0.05 and _rel(R1, R0) > 0.05
    # URFB's signature: identical increments leave R_l − W_lᵀ unchanged
    assert max(np.max(np.abs((r1 - w1.T) - (r0 - w0.T))) for r1, w1, r0, w0 in zip(R1, W1, R0, W0)) < 1e-12
    # predictions of the circuit (plasticity off) equal the matrix forward and leave weights alone
    assert _rel([circ.predict(X[:8])], [P.forward(W1, None, X[:8], PA.default_transfers(3)).output]) <= REL_TOL
    assert _rel(circ.weights()[0], W1) == 0.0
