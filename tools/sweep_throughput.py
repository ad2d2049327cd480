"""Throughput of ``credit sweep`` on the local engine: the same grid of single-threaded runs with
1 and with 2 worker processes (each into a fresh folder), runs per second and their ratio.

    python tools/sweep_throughput.py [--runs 8] [--epochs 30] [--n-train 1024] [--repeats 1] [--json PATH]

The ratio is bounded by the cores free for the workers: the load average before and after is
printed with it (other processes on the machine lower it).  ``--repeats N`` alternates the two
measurements N times (1, 2, 1, 2, …) and takes the ratio of the medians, so that a change in the
machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def measure(workers: int, runs: int, epochs: int, n_train: int, root: Path) -> dict:
    from bridge.app.sweep import parse_sweep, run_sweep

    sweep = parse_sweep({"task": "digits", "sizes": "64-100-10", "epochs": epochs, "n_train": n_train,
                         "threads": 1, "grid": {"rule": ["fa"], "seed": list(range(runs))}})
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = run_sweep(sweep, root / f"workers{workers}", workers=workers, quiet=True)
    wall = time.perf_counter() - t0
    assert res.count("finished") == runs
    train = sum(r["seconds"] for r in res.results.values())
    return {"workers": workers, "runs": runs, "wall_s": wall, "runs_per_s": runs / wall,
            "train_s_per_run": train / runs, "load_before": load0, "load_after": os.getloadavg()[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--n-train", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", help="write the rows and the ratio here")
    a = p.parse_args(argv)
    rows = []
    for _ in range(a.repeats):
        for w in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                r = measure(w, a.runs, a.epochs, a.n_train, Path(tmp))
            rows.append(r)
            print(f"workers {r['workers']}: {r['runs']} runs in {r['wall_s']:.1f} s = {r['runs_per_s']:.3f} runs/s "
                  f"(training {r['train_s_per_run']:.2f} s/run; load average {r['load_before']:.2f} → "
                  f"{r['load_after']:.2f})", flush=True)
    rate = {w: statistics.median(r["runs_per_s"] for r in rows if r["workers"] == w) for w in (1, 2)}
    ratio = rate[2] / rate[1]
    print(f"2 workers / 1 worker: {ratio:.2f}× on {os.cpu_count()} cores")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "ratio": ratio, "cpus": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
