"""``credit bench --only spiking``: simulated seconds per wall second of a 1000-neuron, 1e5-synapse
spiking network (leaky integrate-and-fire, Poisson-like drive, random excitatory/inhibitory
synapses with ``on_pre``) on Brian2's ``cython`` target and as a ``cpp_standalone`` binary, each in
its own process; compile/build times are reported apart (cython's is paid once and cached)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator

from ..app.registry import register_bench

N, P_CONNECT = 1000, 0.1  # 1000 neurons, ~1e5 synapses

_SCRIPT = r"""
import json, sys, time, tempfile
import brian2 as b2
target, T, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
b2.seed(seed)
b2.prefs.codegen.target = "cython" if target == "cython" else "numpy"
if target == "standalone":
    d = tempfile.mkdtemp()
    b2.set_device("cpp_standalone", directory=d, build_on_run=False)
def build():
    G = b2.NeuronGroup({N}, "dv/dt = (-v + mu + sigma*sqrt(tau)*xi)/tau : volt (unless refractory)",
                       threshold="v > 20*mV", reset="v = 0*mV", refractory=2*b2.ms, method="euler",
                       namespace={{"tau": 20*b2.ms, "mu": 18*b2.mV, "sigma": 6*b2.mV}})
    S = b2.Synapses(G, G, "w : volt", on_pre="v_post += w")
    S.connect(p={P})
    S.w = "0.2*mV - 0.45*mV*int(i < {N}/5)"
    M = b2.SpikeMonitor(G)
    return b2.Network(G, S, M), S, M
t0 = time.perf_counter()
net, S, M = build()
if target == "standalone":
    net.run(T * b2.second)
    t1 = time.perf_counter()
    b2.device.build(directory=d, compile=True, run=False)
    t2 = time.perf_counter()
    b2.device.run(directory=d)
    t3 = time.perf_counter()
    out = {{"build_s": t2 - t0, "run_s": t3 - t2, "synapses": int(len(S)), "spikes": int(M.num_spikes)}}
else:
    net.run(T * b2.second)  # first run: code generation (and, for cython, compilation unless cached)
    t1 = time.perf_counter()
    net.run(T * b2.second)
    t2 = time.perf_counter()
    out = {{"build_s": t1 - t0 - (t2 - t1), "run_s": t2 - t1, "synapses": int(len(S)), "spikes": int(M.num_spikes)}}
print(json.dumps(out))
""".format(N=N, P=P_CONNECT)


def _measure(target: str, T: float, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-c", _SCRIPT, target, str(T), str(seed)], capture_output=True, text=True,
                           cwd=tmp, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"spiking bench ({target}) failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


@register_bench("spiking")
def bench_spiking(opts) -> Iterator[dict]:
    T = 0.2 if opts.quick else 1.0
    base = None
    for target in ("cython", "standalone"):
        m = _measure(target, T, opts.seed)
        speed = T / m["run_s"]
        base = speed if base is None else base
        label = "cpp_standalone" if target == "standalone" else target
        yield {"name": f"spiking {N} neurons, {m['synapses']} synapses, {label}: simulated s per wall s",
               "value": speed, "unit": "sim s / s", "ratio": speed / base}
        what = "code generation + compile on first run (0 once cached)" if target == "cython" else "build"
        yield {"name": f"spiking {label}: {what} time", "value": m["build_s"], "unit": "s", "ratio": None}
