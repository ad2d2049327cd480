"""The sweep files in ``examples/sweeps``: each parses and resolves every run, and a file written
to repeat an example's protocol trains, run for run, what the example trains."""

from pathlib import Path

import pytest
import torch

from bridge.app import sweep as sw
from bridge.app.examples import load_example
from bridge.app.runs import run_experiment

SWEEPS = Path(__file__).resolve().parents[1] / "examples" / "sweeps"


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_sweep_file_resolves(path, tmp_path):
    runs = sw.expand(sw.load_sweep(path), tmp_path)
    assert len(runs) >= 5 and len({r.key for r in runs}) == len(runs)


def test_cameron_sweep_is_the_example(shared_data, tmp_path):
    """examples/sweeps/cameron_mnist.toml at a small size gives, rule for rule, the test errors and
    losses of examples/Cameron_2025/results.py at the same size (seed 0: the RF noise seed the file
    fixes); float32, the same arithmetic, so equal."""
    small = {"n_train": 256, "n_test": 128, "epochs": 1, "evals_per_epoch": 2}
    sweep = sw.load_sweep(SWEEPS / "cameron_mnist.toml")
    sweep.base.update(small, data_dir=str(shared_data))
    sweep.grid["seed"] = [0]
    torch.set_num_threads(1)
    got = {}
    for run in sw.expand(sweep, tmp_path):
        s = run_experiment(run.config, write=False)
        got[run.config.rule] = (s["final"]["test_error"], s["final"]["test_loss"])
    example = load_example("Cameron_2025/results")
    res = example.simulate({**small, "seed": 0, "data_dir": str(shared_data)})
    want = {r: (v["test_error"][-1], v["test_loss"][-1]) for r, v in res["runs"].items()}
    assert set(got) == {"bp", "fa", "rf", "rf-exact"} == set(want)
    assert got == want


def test_lansdell_fig1_sweep_is_the_example(shared_data, tmp_path):
    """examples/sweeps/lansdell_fig1.toml at a small size gives, rule for rule, the test errors and
    losses of examples/Lansdell_2019/fig1.py with the same settings (seed 0: NP's noise seed)."""
    small = {"n_train": 256, "n_test": 128, "epochs": 1, "evals_per_epoch": 2}
    sweep = sw.load_sweep(SWEEPS / "lansdell_fig1.toml")
    sweep.base.update(small, data_dir=str(shared_data))
    sweep.grid["seed"] = [0]
    torch.set_num_threads(1)
    got, settings = {}, {}
    for run in sw.expand(sweep, tmp_path):
        s = run_experiment(run.config, write=False)
        got[run.config.rule] = (s["final"]["test_error"], s["final"]["test_loss"])
        settings[run.config.rule] = {"lr": run.config.lr, **{k: v for k, v in run.config.rule_params.items()}}
    example = load_example("Lansdell_2019/fig1")
    res = example.simulate({**small, "settings": settings, "data_dir": str(shared_data)})
    want = {r: (v["test_error"][-1], v["test_loss"][-1]) for r, v in res["per_seed"][0].items()}
    assert set(got) == {"bp", "fa", "np"} == set(want)
    assert got == want
