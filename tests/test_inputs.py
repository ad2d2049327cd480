"""Bad inputs and silent side effects: each must give a clear error, or leave global state alone."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=300)


# ------------------------------------------------------------------------------- matplotlib
def test_library_and_example_imports_leave_the_matplotlib_backend_alone():
    """A notebook's backend survives importing bridge.app.plots, every example, and the demo plot helpers."""
    r = _python("""
        import importlib.util, pathlib
        import matplotlib
        matplotlib.use("svg")
        import bridge.app.plots
        import bridge.checks.amit, bridge.checks.learned
        bridge.checks.amit._plt(); bridge.checks.learned._plt()
        for i, f in enumerate(sorted(pathlib.Path("examples").glob("*_*/*.py"))):
            spec = importlib.util.spec_from_file_location(f"example_{i}", f)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        print("backend", matplotlib.get_backend())
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1].lower() == "svg", r.stdout


# ------------------------------------------------------------------------------------- circuits
def _di_mats():
    rng = np.random.default_rng(0)
    W = rng.uniform(-0.5, 0.5, (4, 5))
    return W, -W.T.copy(), 0.5 * rng.normal(size=(2, 4))


@pytest.fixture
def codegen_auto():
    """Brian2's global code-generation target set to 'auto' for the test, restored afterwards."""
    import brian2 as b2

    old = b2.prefs.codegen.target
    b2.prefs.codegen.target = "auto"
    yield b2
    b2.prefs.codegen.target = old


@pytest.mark.brian2
def test_two_controllers_share_one_network(codegen_auto):
    """Controllers with different name= prefixes (and different α) run together in one Network."""
    b2 = codegen_auto
    from circuits import codegen_target
    from circuits.controller import build_controller

    W, B, t = _di_mats()
    alone = [build_controller(W, B, t, "tanh", a, 0.1 * b2.ms, name=f"alone{k}").run(30).state("delta0")
             for k, a in enumerate((0.1, 0.5))]
    c1 = build_controller(W, B, t, "tanh", 0.1, 0.1 * b2.ms, name="first")
    c2 = build_controller(W, B, t, "tanh", 0.5, 0.1 * b2.ms, name="second")
    net = b2.Network(c1.network.objects, c2.network.objects)
    with codegen_target("numpy"):
        net.run(30 * 0.1 * b2.ms)  # each group carries its own namespace: no run namespace needed
    np.testing.assert_allclose(c1.state("delta0"), alone[0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(c2.state("delta0"), alone[1], rtol=1e-12, atol=0)
    assert c1.groups["delta0"].name == "first_delta0" and c2.synapses["W1"].name == "second_W1"


@pytest.mark.brian2
def test_circuits_leave_the_global_codegen_target_alone(codegen_auto):
    b2 = codegen_auto
    from circuits.controller import build_controller, build_repeat
    from circuits.recirculation import build_recirculation

    W, B, t = _di_mats()
    build_controller(W, B, t, target="numpy").run(3)
    assert b2.prefs.codegen.target == "auto"
    W3 = np.eye(4)[:3]
    build_repeat([W, W3], [B, W3.T], t[:, :3], ["tanh", "tanh"], target="numpy", record=False).run(2)
    assert b2.prefs.codegen.target == "auto"
    rng = np.random.default_rng(1)
    build_recirculation(rng.normal(size=(2, 3)), rng.normal(size=(3, 2)), rng.normal(size=(2, 3)),
                        target="numpy").run()
    assert b2.prefs.codegen.target == "auto"


@pytest.mark.brian2
def test_controller_dt_is_a_brian2_time():
    import brian2 as b2

    from circuits.controller import build_controller

    W, B, t = _di_mats()
    c = build_controller(W, B, t, dt=0.1 * b2.ms, record=False)
    assert c.groups["delta0"].clock.dt == 0.1 * b2.ms
    c.run(10)
    assert abs(float(c.network.t / b2.ms) - 1.0) < 1e-9  # 10 steps of 0.1 ms


@pytest.mark.brian2
@pytest.mark.parametrize("dt", [0.1, 1, "0.1*ms"])
def test_plain_number_dt_raises_type_error(dt, codegen_auto):
    from circuits.amit import LayeredCircuit, build_output_error_circuit
    from circuits.controller import build_controller, build_single_loop
    from circuits.node_perturbation import build_np_circuit
    from circuits.recirculation import build_recirculation

    W, B, t = _di_mats()
    rng = np.random.default_rng(2)
    with pytest.raises(TypeError, match=r"^dt must be a Brian2 time"):
        build_controller(W, B, t, dt=dt)
    with pytest.raises(TypeError, match=r"^dt must be a Brian2 time"):
        build_single_loop([W], B, t, ["tanh"], 0.1, dt)
    with pytest.raises(TypeError, match=r"^dt must be a Brian2 time"):
        build_recirculation(rng.normal(size=(2, 3)), rng.normal(size=(3, 2)), rng.normal(size=(2, 3)), dt=dt)
    with pytest.raises(TypeError, match=r"^dt must be a Brian2 time"):
        build_np_circuit(np.ones((2, 3)), np.ones((1, 2)), np.ones((2, 1)), np.ones((4, 3)), np.ones((4, 1)),
                         np.ones((4, 2)), c_h=0.1, eta=0.1, dt=dt)
    with pytest.raises(TypeError, match=r"^dt must be a Brian2 time"):
        LayeredCircuit((3, 2), seed=0, dt=dt)
    with pytest.raises(TypeError, match=r"^half_cycle must be a Brian2 time"):
        build_output_error_circuit(np.zeros((1, 2)), np.array([0]), half_cycle=dt)


@pytest.mark.brian2
def test_bad_target_and_name_raise_before_building(codegen_auto):
    b2 = codegen_auto
    from circuits.controller import build_controller

    W, B, t = _di_mats()
    with pytest.raises(ValueError, match=r"^target: .*valid: numpy, cython"):
        build_controller(W, B, t, target="gpu")
    with pytest.raises(ValueError, match=r"^name must start with a letter"):
        build_controller(W, B, t, name="two words")
    with pytest.raises(ValueError, match=r"^architecture must be one of controller, expanding"):
        build_controller(W, B, t, architecture="bogus")
    with pytest.raises(TypeError):  # the old keyword is gone: one codegen keyword, target=, everywhere
        build_controller(W, B, t, codegen="numpy")
    assert b2.prefs.codegen.target == "auto"


# ---------------------------------------------------------------------------------------- bench
def _one_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["--only", "bogus"], ["--only", "bogus", "valid: ", "rules", "di", "circuit"]),
    (["--only", "di", "nope"], ["--only", "nope", "valid: "]),
    (["--repeats", "0"], ["--repeats", "≥ 1", "got 0"]),
    (["--repeats", "-3"], ["--repeats", "≥ 1"]),
])
def test_bench_rejects_bad_options_with_one_line(argv, words, capsys):
    from bridge.app.cli import main

    assert main(["bench", *argv]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("credit bench: error:") and all(w in line for w in words), line


def test_bench_without_numba_skips_the_baseline_row(monkeypatch, capsys):
    """The README install has no numba (the optional bench extra): the di group still runs."""
    import bridge.checks.inversion as ci
    from bridge.app.cli import main

    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    monkeypatch.setattr(ci, "_NUMBA_FN", None)
    assert main(["bench", "--only", "di", "--quick", "--repeats", "1"]) == 0
    out, err = capsys.readouterr()
    hint = [l for l in err.splitlines() if "numba" in l]
    assert len(hint) == 1 and 'pip install "credit-circuits[bench]"' in hint[0], err
    assert "di-numba-alg1-per-example" not in out and "di-euler-batched-f64" in out
    # progress: one stderr line per row as the group finishes
    assert "  di-euler-batched-f64:" in err and "  ndi-closed-form-f64:" in err


# ------------------------------------------------------------------------------------- crossval
@pytest.mark.parametrize("argv, words", [
    (["--examples", "-5"], ["--examples", "≥ 1", "got -5"]),
    (["--examples", "0"], ["--examples", "≥ 1"]),
    (["--only", "no-such-check"], ["--only", "no-such-check", "valid: "]),
])
def test_crossval_rejects_bad_options_with_one_line(argv, words, capsys):
    from bridge.app.cli import main

    assert main(["crossval", *argv]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("credit crossval: error:") and all(w in line for w in words), line


def test_crossval_json_directory_is_an_error(tmp_path, capsys):
    from bridge.app.cli import main

    assert main(["crossval", "--only", "engine-fa-transpose-is-bp", "--json", str(tmp_path)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--json" in line and "is a directory" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.brian2
def test_crossval_without_mnist_stops_before_running_anything(tmp_path, monkeypatch, capsys):
    """No silent substitute data: missing MNIST names --data-dir and $CREDIT_DATA_DIR and runs nothing."""
    from bridge.app.cli import main

    monkeypatch.delenv("CREDIT_DATA_DIR", raising=False)
    empty = tmp_path / "nodata"
    empty.mkdir()
    path = tmp_path / "out.json"
    rc = main(["crossval", "--only", "engine-fa-transpose-is-bp", "amit-layered-mnist", "--sizes", "784-30-10",
               "--examples", "5", "--data-dir", str(empty), "--json", str(path)])
    assert rc == 2 and not path.exists()
    err = capsys.readouterr().err
    line = _one_error_line(err)
    assert "MNIST not found" in line and "--data-dir" in line and "$CREDIT_DATA_DIR" in line
    assert "--allow-substitute-data" in line and "running" not in err
    # unset data dir: the same error, no lookup relative to the installed package
    assert main(["crossval", "--only", "amit-layered-mnist-1000", "--quiet"]) == 2
    assert "MNIST not found" in _one_error_line(capsys.readouterr().err)


def test_crossval_prints_progress_per_check_unless_quiet(capsys):
    from bridge.app.cli import main

    assert main(["crossval", "--only", "engine-fa-transpose-is-bp"]) == 0
    err = capsys.readouterr().err
    assert "[1/1] running engine-fa-transpose-is-bp" in err and "[1/1] engine-fa-transpose-is-bp: " in err
    assert main(["crossval", "--only", "engine-fa-transpose-is-bp", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
