"""Data-parallel training (DDP, gloo, world size 2, on this machine): for every rule, the final weights
and feedback equal one process trained on the same global batches, to 1e-9 relative (float64; the
only difference is the order of the all-reduce's additions)."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.multiprocessing as mp

RULES = ["bp", "fa", "frfb", "dfa", "urfb", "pbp", "ndi", "di", "np", "rf", "rf-exact"]
PARAMS = {"di": {"method": "steady", "max_norm": 1.0}, "np": {"c_h": 0.05}, "rf": {"n_noise": 8}}


def _cfg(rule):
    from bridge.app.runs import TrainConfig

    return TrainConfig(task="digits", rule=rule, sizes=(64, 16, 12, 10), epochs=1, n_train=96, n_test=32,
                       batch_size=16, lr=0.05, dtype="float64", quiet=True, seed=2, probe_size=16,
                       rule_params=dict(PARAMS.get(rule, {})))


def _states(rules):
    from bridge.app.runs import run_experiment

    out = {}
    for rule in rules:
        torch.set_num_threads(1)
        s = run_experiment(_cfg(rule), write=False)
        assert s["status"] == "finished"
        out[rule] = {k: v.detach().clone() for k, v in s["model"].state_dict().items() if torch.is_tensor(v)}
    return out


def _worker(rank, world, init_file, result_file, rules):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        states = _states(rules)
        if rank == 0:
            torch.save(states, result_file)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32", reason="needs torch.distributed")
def test_ddp_world_size_2_equals_one_process(tmp_path):
    result = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(result), RULES), nprocs=2, join=True)
    ddp = torch.load(result, weights_only=False)
    single = _states(RULES)
    for rule in RULES:
        for k, v in single[rule].items():
            if not v.is_floating_point():
                assert torch.equal(ddp[rule][k], v), (rule, k)
                continue
            scale = max(float(v.abs().max()), 1e-300)
            assert float((ddp[rule][k] - v).abs().max()) / scale <= 1e-9, (rule, k)
        # and training did move the weights
        init = _cfg(rule).resolved()
        from bridge.app.runs import build_model

        W0 = build_model(init, 64, 10).linears[0].weight
        assert not torch.allclose(single[rule]["linears.0.weight"], W0)
