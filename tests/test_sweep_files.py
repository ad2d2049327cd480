"""The sweep files in ``examples/sweeps``: each parses and resolves every run, and a file written
to repeat an example's protocol trains, run for run, what the example trains."""

from pathlib import Path

import pytest
import torch

from bridge.app import sweep as sw
from bridge.app.examples import load_example
from bridge.app.runs import run_experiment

SWEEPS = Path(__file__).resolve().parents[1] / "examples" / "sweeps"


SMALL = {"n_train": 256, "n_test": 128, "epochs": 1, "evals_per_epoch": 2}


def _small(path, data_dir):
    """A sweep file at the SMALL size, seed 0 only (one torch thread, as the sweep's workers)."""
    sweep = sw.load_sweep(path)
    sweep.base.update(SMALL, data_dir=str(data_dir))
    sweep.grid["seed"] = [0]
    torch.set_num_threads(1)
    return sweep


def _sweep_runs(sweep, out, example, params, monkeypatch) -> dict:
    """rule → (final test error, test loss) of each run of ``sweep``.  The first run loads its data as
    credit train does; the others and then the example reuse the example's own load (reading MNIST
    takes seconds), which the first run's agreement with the example vouches for."""
    data, got = None, {}
    for run in sw.expand(sweep, out):
        s = run_experiment(run.config, data=data, write=False)
        got[run.config.rule] = (s["final"]["test_error"], s["final"]["test_loss"])
        if data is None:
            data = example._data({**example.DEFAULTS, **params})
            monkeypatch.setattr(example, "_data", lambda p, data=data: data)
    return got


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_sweep_file_resolves(path, tmp_path):
    runs = sw.expand(sw.load_sweep(path), tmp_path)
    assert len(runs) >= 5 and len({r.key for r in runs}) == len(runs)


def test_cameron_sweep_is_the_example(shared_data, tmp_path, monkeypatch):
    """examples/sweeps/cameron_mnist.toml at a small size gives, rule for rule, the test errors and
    losses of examples/Cameron_2025/results.py at the same size (seed 0: the RF noise seed the file
    fixes); float32, the same arithmetic, so equal."""
    sweep = _small(SWEEPS / "cameron_mnist.toml", shared_data)
    example = load_example("Cameron_2025/results")
    params = {**SMALL, "seed": 0, "data_dir": str(shared_data)}
    got = _sweep_runs(sweep, tmp_path, example, {**params, "task": "mnist"}, monkeypatch)
    res = example.simulate(params)
    want = {r: (v["test_error"][-1], v["test_loss"][-1]) for r, v in res["runs"].items()}
    assert set(got) == {"bp", "fa", "rf", "rf-exact"} == set(want)
    assert got == want


def test_lansdell_fig1_sweep_is_the_example(shared_data, tmp_path, monkeypatch):
    """examples/sweeps/lansdell_fig1.toml at a small size gives, rule for rule, the test errors and
    losses of examples/Lansdell_2019/fig1.py with the same settings (seed 0: NP's noise seed)."""
    sweep = _small(SWEEPS / "lansdell_fig1.toml", shared_data)
    example = load_example("Lansdell_2019/fig1")
    got = _sweep_runs(sweep, tmp_path, example, {**SMALL, "data_dir": str(shared_data)}, monkeypatch)
    settings = {run.config.rule: {"lr": run.config.lr, **run.config.rule_params} for run in sw.expand(sweep, tmp_path)}
    res = example.simulate({**SMALL, "settings": settings, "data_dir": str(shared_data)})
    want = {r: (v["test_error"][-1], v["test_loss"][-1]) for r, v in res["per_seed"][0].items()}
    assert set(got) == {"bp", "fa", "np"} == set(want)
    assert got == want
