"""bridge.checks.amit through the CLI: the Amit (2021) crossval rows, the demos and the bench.

Fast by default (numpy code-generation target, 64-30-10 on digits or 784-30-10 on 20 MNIST images);
the 784-1000-10 check (cython) and the bench are marked slow.
"""

import json

import numpy as np
import pytest

pytest.importorskip("brian2")

from bridge.app.cli import main  # noqa: E402

pytestmark = [pytest.mark.brian2, pytest.mark.filterwarnings("ignore::DeprecationWarning:pyparsing")]


def _crossval(tmp_path, name, *extra):
    path = tmp_path / f"{name}.json"
    rc = main(["crossval", "--only", name, "--json", str(path), "--quiet", *extra])
    rows = json.loads(path.read_text())["checks"] if path.exists() else []
    return rc, rows


@pytest.mark.parametrize("name", ["amit-output-error", "amit-feedback-gate"])
def test_discrete_circuit_checks_pass_exactly(tmp_path, name):
    rc, rows = _crossval(tmp_path, name)
    assert rc == 0
    assert len(rows) >= 4 and all(r["passed"] for r in rows)
    assert all(r["max_rel_diff"] == 0.0 and r["tolerance"] == 0.0 for r in rows)
    names = " ".join(r["name"] for r in rows)
    assert "boundary" in names and "random" in names
    if name == "amit-output-error":
        assert "μ=1" in names and "μ=0.3" in names
    else:
        assert any("K bound" in r["name"] and "raised: True" in r["detail"] for r in rows)


def test_layered_check_passes_on_digits_and_weights_move(tmp_path):
    rc, rows = _crossval(tmp_path, "amit-layered-mnist", "--sizes", "64-30-10", "--examples", "20")
    assert rc == 0
    assert len(rows) == 6 and all(r["passed"] for r in rows)
    assert all(r["tolerance"] == 1e-9 and r["max_rel_diff"] < 1e-12 for r in rows)
    joined = " ".join(r["name"] for r in rows)
    for piece in ("urfb,", "frfb,", "urfb 50%", "before_update vs bridge torch", "after_update vs numpy twin"):
        assert piece in joined
    for r in rows:  # the weights really changed (the detail reports ‖ΔW‖/‖W0‖ per layer)
        rel = [float(v) for v in r["detail"].split("ΔW/W ")[1].split(",")[0].split("/")]
        assert min(rel) > 0.05, r["detail"]
        assert "target numpy" in r["detail"]


def test_layered_check_falls_back_to_digits_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDIT_DATA_DIR", raising=False)
    empty = tmp_path / "nodata"
    empty.mkdir()
    rc, rows = _crossval(tmp_path, "amit-layered-mnist", "--sizes", "784-30-10", "--examples", "20",
                         "--data-dir", str(empty))
    assert rc == 2 and rows == []  # no MNIST and no opt-in: an error, nothing run
    rc, rows = _crossval(tmp_path, "amit-layered-mnist", "--sizes", "784-30-10", "--examples", "20",
                         "--data-dir", str(empty), "--allow-substitute-data")
    assert rc == 0 and all(r["passed"] for r in rows)
    assert all(r["detail"].startswith("SUBSTITUTE DATA (--allow-substitute-data)") and "upsampled" in r["detail"]
               for r in rows)


def _perturbed(fn, **change):
    def wrapped(*args, **kw):
        kw.update({k: kw[k] * v for k, v in change.items()})
        return fn(*args, **kw)

    return wrapped


@pytest.mark.parametrize("side", ["bridge", "twin"])
def test_layered_check_fails_when_the_reference_is_perturbed(tmp_path, monkeypatch, side):
    from bridge.checks import core
    from plasticity import amit as PA

    if side == "bridge":  # a 1 % wrong learning rate in the torch engine's run
        monkeypatch.setattr(core, "train_online", _perturbed(core.train_online, lr=1.01))
    else:  # ... or in the numpy twin of the Fig. 15 order
        monkeypatch.setattr(PA, "train_online", _perturbed(PA.train_online, eta=1.01))
    rc, rows = _crossval(tmp_path, "amit-layered-mnist", "--sizes", "64-30-10", "--examples", "10")
    assert rc == 1
    failed = [r for r in rows if not r["passed"]]
    want = "bridge torch" if side == "bridge" else "numpy twin"
    assert failed and all(want in r["name"] for r in failed) and len(failed) == 3
    assert min(r["max_rel_diff"] for r in failed) > 1e-6


def test_layered_1000_check_runs_small(tmp_path):
    rc, rows = _crossval(tmp_path, "amit-layered-mnist-1000", "--sizes", "64-30-10", "--examples", "10")
    assert rc == 0 and len(rows) == 2 and all(r["passed"] for r in rows)


@pytest.mark.slow
def test_layered_1000_check_full(tmp_path):
    rc, rows = _crossval(tmp_path, "amit-layered-mnist-1000")
    assert rc == 0 and all(r["passed"] for r in rows)
    assert all("784-1000-10" in r["detail"] and "target cython" in r["detail"] for r in rows)


@pytest.mark.parametrize("name,n_png", [("output-error", 2), ("feedback-gate", 1), ("layered", 2)])
def test_demo_writes_pngs(tmp_path, capsys, name, n_png):
    out = tmp_path / name
    assert main(["circuit", name, "--out", str(out)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == n_png == len(printed)
    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.slow
def test_bench_circuit_quick(tmp_path):
    path = tmp_path / "bench.json"
    assert main(["bench", "--only", "circuit", "--quick", "--json", str(path), "--quiet"]) == 0
    rows = json.loads(path.read_text())["results"]
    assert len(rows) == 4 and all(r["unit"] == "ms/step" and np.isfinite(r["value"]) for r in rows)
    assert any("brian2[" in r["name"] for r in rows)
    assert all(float(r["detail"].split("max rel diff ")[1]) < 1e-9 for r in rows if "brian2[" in r["name"])


@pytest.mark.slow
def test_bench_layered_quick(tmp_path):
    """The layered bench rows: cached build, circuit and twin per example, the two equal to 1e-9."""
    path = tmp_path / "bench.json"
    assert main(["bench", "--only", "layered", "--quick", "--json", str(path), "--quiet"]) == 0
    rows = json.loads(path.read_text())["results"]
    assert [r["unit"] for r in rows] == ["s", "ms", "ms"] and all(np.isfinite(r["value"]) for r in rows)
    circ = rows[1]
    assert "brian2[cython]" in circ["name"] and np.isfinite(circ["ratio"]) and rows[2]["ratio"] == 1.0
    assert float(circ["detail"].split("max rel diff ")[1]) < 1e-9
