"""Smoke tests of examples/Podlaski_2020: ``main --quick`` writes sane results.

The full reproductions (minutes) are run by hand.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "Podlaski_2020"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"podlaski_2020_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _finite(x):
    return x is not None and math.isfinite(x)


def test_orthogonal_init_is_orthonormal_and_seeded():
    mod = _load("autoencoder")
    for shape in ((30, 250), (250, 30), (40, 40)):
        W = torch.empty(shape)
        mod.orthogonal_(W, torch.Generator().manual_seed(0))
        G = W.T @ W if shape[0] >= shape[1] else W @ W.T
        torch.testing.assert_close(G, torch.eye(min(shape)), atol=1e-5, rtol=0)
        W2 = torch.empty(shape)
        mod.orthogonal_(W2, torch.Generator().manual_seed(0))
        assert torch.equal(W, W2)


def test_autoencoder_quick(tmp_path, shared_data):
    mod = _load("autoencoder")
    assert mod.main(["--quick", "--data-dir", str(shared_data), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "autoencoder.png").stat().st_size > 0
    s = json.loads((tmp_path / "summary.json").read_text())
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert set(mod.CONDITIONS) <= set(s) and set(mod.CONDITIONS) <= set(curves)
    assert all(_finite(v) for v in s["baselines"].values())
    for name in mod.CONDITIONS:
        assert s[name]["diverged"] is None, (name, s[name]["diverged"])
        assert _finite(s[name]["test_mse"]) and _finite(s[name]["train_mse"])
        c = curves[name]
        assert len(c["epoch"]) == len(c["test_mse"]) == len(c["train_mse"]) >= 2
        assert all(_finite(v) for v in c["test_mse"] + c["train_mse"])
        # biases start at zero and W is small or orthogonal: the first error is near ‖x‖² per pixel
        assert c["test_mse"][0] == pytest.approx(s["baselines"]["zero"], rel=0.2)
        assert s[name]["paper_learns"] == (name != "bp-gaussian")
