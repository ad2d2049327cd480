"""Sweeps: many ``credit train`` runs over a grid of options, on local worker processes or on Ray.

A sweep file is TOML: fixed ``credit train`` options at the top level (any :class:`TrainConfig`
field, checked as ``credit train --config`` checks them) and a ``[grid]`` table of lists; the sweep
is the Cartesian product of the lists::

    task = "digits"
    sizes = "64-16-10"
    epochs = 5
    [grid]
    rule = ["fa", "urfb"]
    seed = [0, 1, 2]
    lr = [0.05, 0.1]

Options that change together (a rule and its own tuned rate) go in ``[[case]]`` tables; the sweep
is then every case times the grid::

    [grid]
    seed = [0, 1, 2]
    [[case]]
    rule = "bp"
    lr = 0.05
    [[case]]
    rule = "rf"
    lr = 0.01
    rule_params = {n_noise = 32}

The sweep folder ``OUT`` holds::

    OUT/sweep.json          the sweep's fixed options and grid (the mark of a sweep folder)
    OUT/runs/<key>/         one ``credit train`` results folder per run (run_experiment)
    OUT/runs.csv            one row per run: its resolved options, final metrics, the lowest test error
                        and its epoch (best_test_error, best_epoch), status, error, seconds
    OUT/table.md            mean ± sd (ddof 1) and n per group of runs that differ only in seed
    OUT/figures/*.png       test error and test loss against epoch, mean ± sd band per group

``<key>`` is a readable prefix (rule-seed-other grid values) and a hash of the resolved
configuration, so a rerun recognises its done runs (a folder with ``summary.json``: finished, or
diverged, which it would do again) and skips them, continues interrupted ones from their last
checkpoint, and runs the rest (failed ones included).  A run that differs from one already in
``OUT/runs`` only in more ``epochs`` starts from a copy of that run's folder and continues it
(the same numbers as training that long from the start), so raising ``epochs`` in a sweep file
extends the runs it has.  Each run is
deterministic given its resolved configuration, so the engine (``local`` worker processes or
``ray``) does not change the numbers.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .registry import register_bench
from .runs import CHECKPOINT, TrainConfig, _atomic_text, jsonable, read_toml

#: sweep-level options of the file (not part of any run's configuration)
SWEEP_OPTIONS = {"threads": "torch CPU threads of each run (default 1)"}
#: options the sweep sets for every run: not in the grid, and not in a run's key
PER_SWEEP = ("out", "quiet")
#: left out of the key: where the data is read from does not change a run (files are checksummed)
NOT_KEYED = ("out", "quiet", "data_dir")
#: plural names accepted in [grid] for the options one usually sweeps
ALIASES = {"rules": "rule", "seeds": "seed", "tasks": "task", "archs": "arch"}
ENGINES = ("local", "ray")
STATUSES = ("finished", "diverged", "failed")
RAY_HINT = 'pip install "credit-circuits[sweep]"'


@dataclass
class Sweep:
    """The fixed options, the grid (option → list of values, in file order) and the sweep options."""

    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    cases: list = field(default_factory=list)  # [[case]] tables: options that change together
    threads: int = 1
    out: str | None = None
    quiet: bool = False


@dataclass
class Run:
    key: str
    point: dict  # this run's grid values
    config: TrainConfig  # resolved; out = OUT/runs/<key>, quiet


# ------------------------------------------------------------------------------------ the file
def _fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def parse_sweep(raw: dict, source: str = "the sweep file") -> Sweep:
    """Check a sweep file's table (unknown keys are an error naming the valid ones)."""
    names = _fields()
    valid = sorted(names) + sorted(SWEEP_OPTIONS) + ["case", "grid"]
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise ValueError(f"unknown keys in {source}: {', '.join(unknown)}; valid: {', '.join(valid)}")
    raw = dict(raw)
    grid_raw = raw.pop("grid", {})
    if not isinstance(grid_raw, dict):
        raise ValueError(f"grid in {source} must be a table ([grid]) of OPTION = [values]")
    grid = {}
    for k, v in grid_raw.items():
        name = ALIASES.get(k, k)
        if name not in names or name in PER_SWEEP:
            ok = sorted(set(names) - set(PER_SWEEP))
            raise ValueError(f"unknown [grid] key {k!r} in {source}; valid: {', '.join(ok)} "
                             f"(and {', '.join(sorted(ALIASES))})")
        if name in grid:
            raise ValueError(f"[grid] in {source} gives {name} twice ({k!r} and {name!r})")
        if not isinstance(v, list) or not v:
            raise ValueError(f"[grid] {k} in {source} must be a non-empty list of values, got {v!r}")
        grid[name] = v
    both = sorted(set(grid) & set(raw))
    if both:
        raise ValueError(f"{', '.join(both)} in {source}: both a fixed option and a [grid] key; keep one")
    cases = _parse_cases(raw.pop("case", []), names, grid, raw, source)
    threads = raw.pop("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads in {source} must be an integer ≥ 1, got {threads!r}")
    out, quiet = raw.pop("out", None), raw.pop("quiet", False)
    if out is not None and not isinstance(out, str):
        raise ValueError(f"out in {source} must be a folder name, got {out!r}")
    if not isinstance(quiet, bool):
        raise ValueError(f"quiet in {source} must be true or false, got {quiet!r}")
    return Sweep(base=raw, grid=grid, cases=cases, threads=threads, out=out, quiet=quiet)


def _parse_cases(raw_cases, names: list[str], grid: dict, base: dict, source: str) -> list[dict]:
    """The ``[[case]]`` tables: each a non-empty table of run options, none of them also fixed or in
    the grid (an option is set in one place), no two cases alike."""
    if not isinstance(raw_cases, list) or not all(isinstance(c, dict) for c in raw_cases):
        raise ValueError(f"case in {source} must be [[case]] tables of OPTION = value")
    ok = sorted(set(names) - set(PER_SWEEP))
    cases = []
    for i, case in enumerate(raw_cases, 1):
        if not case:
            raise ValueError(f"[[case]] {i} in {source} is empty; give it the options that change together")
        bad = sorted(set(case) - set(ok))
        if bad:
            raise ValueError(f"unknown key {bad[0]!r} in [[case]] {i} of {source}; valid: {', '.join(ok)}")
        for where, table in (("a [grid] key", grid), ("a fixed option", base)):
            clash = sorted(set(case) & set(table))
            if clash:
                raise ValueError(f"{clash[0]} in [[case]] {i} of {source} is also {where}; keep one")
        if case in cases:
            raise ValueError(f"[[case]] {i} in {source} repeats [[case]] {cases.index(case) + 1}")
        cases.append(dict(case))
    return cases


def load_sweep(path) -> Sweep:
    return parse_sweep(read_toml(path), str(path))


def _value(name, v):
    """A TOML value as TrainConfig takes it (sizes as "64-16-10" or [64, 16, 10])."""
    if name == "sizes":
        if isinstance(v, str):
            from plasticity._validate import parse_sizes

            return parse_sizes(v)
        if isinstance(v, list):
            return tuple(v)
    return v


def _slug(v) -> str:
    if isinstance(v, (list, tuple)):
        return "-".join(_slug(x) for x in v)
    if isinstance(v, dict):
        return "_".join(f"{k}{_slug(x)}" for k, x in v.items())
    if isinstance(v, bool):
        return "y" if v else "n"
    return re.sub(r"[^A-Za-z0-9.+]+", "_", str(v)).strip("_")


def run_key(cfg: TrainConfig, point: dict) -> str:
    """``rule-seedN-<other grid values>-<hash>``: the hash covers the resolved configuration (every
    option except out, quiet and data_dir; options at their dataclass default are left out, so a new
    option with a default does not change old keys)."""
    defaults = TrainConfig()
    keyed = {k: v for k, v in dataclasses.asdict(cfg).items()
             if k not in NOT_KEYED and jsonable(v) != jsonable(getattr(defaults, k))}
    text = json.dumps(jsonable(keyed), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    parts = [_slug(cfg.rule), f"seed{cfg.seed}"]
    parts += [f"{k}{_slug(v)}" for k, v in point.items() if k not in ("rule", "seed")]
    prefix = "-".join(p for p in parts if p)[:60].rstrip("-_")
    return f"{prefix}-{digest}"


def expand(sweep: Sweep, out) -> list[Run]:
    """Every grid point as a resolved configuration (a point that does not resolve is an error that
    names it, before anything runs)."""
    from . import registry

    registry.load_rules()
    out = Path(out)
    names = list(sweep.grid)
    runs, seen = [], {}
    for case, values in itertools.product(sweep.cases or [{}], itertools.product(*(sweep.grid[k] for k in names))):
        point = {**case, **dict(zip(names, values))}
        raw = {k: _value(k, v) for k, v in {**sweep.base, **point}.items()}
        where = ", ".join(f"{k}={json.dumps(jsonable(v))}" for k, v in point.items()) or "the fixed options"
        try:
            cfg = TrainConfig(**raw).resolved()
        except (ValueError, TypeError) as e:
            raise ValueError(f"grid point {where}: {e}") from None
        key = run_key(cfg, point)
        if key in seen:
            raise ValueError(f"grid points {seen[key]} and {where} are the same run")
        seen[key] = where
        cfg.out, cfg.quiet = str(out / "runs" / key), True
        runs.append(Run(key, point, cfg))
    return runs


# --------------------------------------------------------------------------------- one run
def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"


def _worker_init(threads: int) -> None:
    """Worker processes: Ctrl-C is the parent's to handle; figures go to files; torch threads."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(threads)


def run_one(job: dict) -> dict:
    """Train one run of a sweep into its folder (continuing it from its checkpoint if an earlier
    sweep was interrupted); never raises for a failing run: returns its row fields (seconds: the
    run's training time as in summary.json; for a failed run, the time until it failed)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    from ..data import DataError
    from . import registry
    from .runs import run_experiment

    t0 = time.perf_counter()
    torch.set_num_threads(job["threads"])
    try:
        registry.load_rules()
        cfg = TrainConfig(**{k: (tuple(v) if k == "sizes" else v) for k, v in job["config"].items()})
        folder = Path(cfg.out)
        s = None
        if job.get("extend_from") and not (folder / CHECKPOINT).is_file():  # continue a shorter run (a copy)
            shutil.rmtree(folder, ignore_errors=True)  # what a failed start left (no checkpoint)
            shutil.copytree(job["extend_from"], folder)
        if (folder / CHECKPOINT).is_file():
            try:
                s = run_experiment(cfg, resume=True)
            except DataError:  # the data, not the checkpoint: fail and keep the folder for the next try
                raise
            except ValueError:  # a checkpoint it cannot continue: start the run afresh
                s = None
        if s is None:
            if folder.exists():
                shutil.rmtree(folder)
            s = run_experiment(cfg)
    except Exception as e:  # recorded; the sweep goes on
        return {"status": "failed", "error": _one_line(e), "final": {}, "seconds": time.perf_counter() - t0}
    final = jsonable(s["final"])
    return {"status": s["status"], "error": s.get("message"), "final": final, "seconds": final.get("seconds")}


def _done(run: Run) -> dict | None:
    """The result of a run whose folder holds summary.json (finished or diverged), else None."""
    path = Path(run.config.out) / "summary.json"
    if not path.is_file():
        return None
    try:
        s = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return {"status": s.get("status", "finished"), "error": s.get("message"), "final": s.get("final", {}),
            "seconds": s.get("final", {}).get("seconds")}


# ------------------------------------------------------------------------------------- engines
def _job(run: Run, threads: int, extend_from: str | None = None) -> dict:
    return {"key": run.key, "config": jsonable(dataclasses.asdict(run.config)), "threads": threads,
            "extend_from": extend_from}


def _shorter_runs(out: Path, runs: list) -> dict:
    """For each run with no checkpoint yet (no folder, or one a failed start left): the folder of
    the longest run in ``out/runs`` that has a checkpoint and the same resolved configuration except
    fewer ``epochs`` (not for a cosine schedule, which depends on the total), so that raising
    ``epochs`` in a sweep file continues the runs it has instead of starting them again."""
    def comparable(d: dict) -> str:
        return json.dumps({k: v for k, v in jsonable(d).items() if k not in NOT_KEYED + ("epochs",)}, sort_keys=True)

    have = {}
    for f in (out / "runs").glob(f"*/{CHECKPOINT}"):
        try:
            saved = json.loads((f.parent / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        have.setdefault(comparable(saved), []).append((int(saved.get("epochs") or 0), f.parent))
    found = {}
    for run in runs:
        if (Path(run.config.out) / CHECKPOINT).is_file() or run.config.lr_schedule == "cosine":
            continue
        shorter = [(e, d) for e, d in have.get(comparable(dataclasses.asdict(run.config)), []) if e < run.config.epochs]
        if shorter:
            found[run.key] = str(max(shorter)[1])
    return found


def _local(jobs, workers, threads, on_result):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ex = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,))
    try:
        pending = {ex.submit(run_one, j): j for j in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                job = pending.pop(f)
                try:
                    result = f.result()
                except Exception as e:  # the worker process died (killed, out of memory)
                    result = {"status": "failed", "error": _one_line(e), "final": {}, "seconds": None}
                on_result(job, result)
    except BaseException:
        # interrupted: stop the runs in flight (each continues from its last epoch's checkpoint)
        for p in list((getattr(ex, "_processes", None) or {}).values()):
            p.terminate()
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(f"--engine ray needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


def _ray(jobs, workers, threads, on_result, address=None):
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        # workers import this package from where the driver imports it (a checkout is not installed)
        root = str(Path(__file__).resolve().parents[2])
        env = {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
               "MPLBACKEND": "Agg"}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env=None if address else {"env_vars": env},
                 **({} if address else {"num_cpus": max(threads, workers * threads if workers else os.cpu_count() or 1)}))
    remote = ray.remote(num_cpus=threads, max_retries=0)(run_one)
    queue, pending = list(jobs), {}
    limit = workers or len(queue)
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                job = queue.pop(0)
                pending[remote.remote(job)] = job
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # the worker died
                    result = {"status": "failed", "error": _one_line(e), "final": {}, "seconds": None}
                on_result(job, result)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------------------------- outputs
def _cell(v) -> str:
    v = jsonable(v)
    if v is None:
        return ""
    if isinstance(v, (list, tuple, dict, bool)):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


OPTIONS = [n for n in _fields() if n not in PER_SWEEP]


def rows_of(runs: list[Run], results: dict) -> list[dict]:
    """One row per run that has a result: key, every resolved option, every final metric, status,
    error, seconds (list-valued values as JSON)."""
    rows = []
    for run in runs:
        r = results.get(run.key)
        if r is None:
            continue
        row = {"key": run.key, **{k: getattr(run.config, k) for k in OPTIONS}}
        row.update({k: v for k, v in r["final"].items() if k != "seconds"})
        row.update(r.get("best", {}))
        row.update(status=r["status"], error=r["error"], seconds=r["seconds"])
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    cols = ["key", *OPTIONS]
    for row in rows:
        cols += [k for k in row if k not in cols and k not in ("status", "error", "seconds")]
    cols += ["status", "error", "seconds"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in rows:
        w.writerow([_cell(row.get(c)) for c in cols])
    _atomic_text(path, buf.getvalue())


def _pm(s: dict) -> str:
    """``mean ± sd`` of a :func:`bridge.app.plots.mean_sd` result."""
    if s["n"] == 0:
        return "-"
    if s["n"] == 1:  # no spread to show from one run
        return f"{s['mean']:.4g}"
    return f"{s['mean']:.4g} ± {s['sd']:.2g}"


def group_keys(sweep: Sweep) -> list[str]:
    """The options that tell groups apart: every case key (in order of first appearance) and every
    grid key but seed."""
    keys = list(dict.fromkeys(k for case in sweep.cases for k in case))
    return keys + [k for k in sweep.grid if k != "seed" and k not in keys]


def _groups(runs: list[Run], keys: list[str]) -> dict:
    groups = {}
    for run in runs:
        label = tuple(_label_value(run.point[k]) if k in run.point else "-" for k in keys)
        groups.setdefault(label, []).append(run)
    return groups


def _label_value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "-".join(map(str, v))
    if isinstance(v, dict):
        return json.dumps(v)
    return str(v)


TABLE_METRICS = ("test_error", "test_nse", "best_test_error", "best_test_nse", "best_epoch", "test_loss", "train_loss",
                 "seconds")


def write_table(path: Path, sweep: Sweep, runs: list[Run], results: dict) -> None:
    """Mean ± sd (ddof 1) over the finished runs of each group (every grid key but seed)."""
    from .plots import mean_sd

    keys = group_keys(sweep)
    metrics = [m for m in TABLE_METRICS
               if any(m in r["final"] or m in r.get("best", {}) for r in results.values() if r["status"] == "finished")]
    head = [*keys, "n", *metrics, "not finished"]
    lines = [f"{len(results)} of {len(runs)} runs; mean ± sd (ddof 1) over the finished runs of each group "
             f"(n of them){' — over seeds' if 'seed' in sweep.grid else ''}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, members in _groups(runs, keys).items():
        res = [results[m.key] for m in members if m.key in results]
        fin = [r for r in res if r["status"] == "finished"]
        cells = list(label) + [str(len(fin))]
        for m in metrics:
            vals = [r["seconds"] if m == "seconds" else {**r["final"], **r.get("best", {})}.get(m) for r in fin]
            cells.append(_pm(mean_sd([v for v in vals if isinstance(v, (int, float))])))
        other = [r["status"] for r in res if r["status"] != "finished"]
        missing = len(members) - len(res)
        note = ", ".join(f"{other.count(s)} {s}" for s in STATUSES if s in other)
        if missing:
            note = ", ".join(x for x in (note, f"{missing} not run") if x)
        cells.append(note or "-")
        lines.append("| " + " | ".join(cells) + " |")
    _atomic_text(path, "\n".join(lines) + "\n")


def _history(run: Run) -> list[dict]:
    path = Path(run.config.out) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def best_of(history: list[dict]) -> dict:
    """The run's lowest test error (or NSE, for regression tasks) over its evaluations and the epoch
    it came at (the first, on a tie): ``{"best_test_error": e, "best_epoch": epoch}``; where it lies
    before the last epoch, the run has begun to overfit (or to wander)."""
    for metric in ("test_error", "test_nse"):
        rows = [r for r in history if isinstance(r.get(metric), (int, float))]
        if rows:
            top = min(rows, key=lambda r: r[metric])
            return {f"best_{metric}": top[metric], "best_epoch": top["epoch"]}
    return {}


def plot_sweep(folder: Path, sweep: Sweep, runs: list[Run], results: dict) -> list[Path]:
    """``test_error.png`` (or ``test_nse.png``) and ``test_loss.png``: mean ± sd band per group."""
    import matplotlib.pyplot as plt

    from .plots import mean_sd

    keys = group_keys(sweep)
    curves = {}
    for label, members in _groups(runs, keys).items():
        hists = [_history(m) for m in members if results.get(m.key, {}).get("status") == "finished"]
        hists = [h for h in hists if h]
        if hists:
            curves[", ".join(f"{k}={v}" for k, v in zip(keys, label)) or "all runs"] = hists
    if not curves:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    first = next(iter(curves.values()))[0][0]
    paths = []
    for metric in ("test_error" if "test_error" in first else "test_nse", "test_loss"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, hists in curves.items():
            by_epoch = {}
            for h in hists:
                for row in h:
                    if row.get(metric) is not None:
                        by_epoch.setdefault(row["epoch"], []).append(row[metric])
            ep = sorted(by_epoch)
            stats = [mean_sd(by_epoch[e]) for e in ep]
            mean = [s["mean"] for s in stats]
            sd = [s["sd"] for s in stats]
            (line,) = ax.plot(ep, mean, label=f"{name} (n={len(hists)})")
            ax.fill_between(ep, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                            color=line.get_color(), alpha=0.2, lw=0)
        ax.set(xlabel="epoch", ylabel=metric.replace("_", " ") + " (mean ± sd)",
               yscale="log" if metric == "test_loss" else "linear")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(folder / f"{metric}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------------- sweep
@dataclass
class SweepResult:
    runs: list
    results: dict  # key → {"status", "error", "final", "seconds", "best" (best_of)}
    skipped: int  # finished before this call
    out: Path
    extended: int = 0  # runs of this call that continued a shorter run's copy (epochs raised)

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.results.values())


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: ``done`` of ``total`` runs have a result; rerunning resumes the rest."""

    def __init__(self, done: int, total: int):
        super().__init__(f"{done} of {total} runs done")
        self.done, self.total = done, total


def _prepare(out: Path, sweep: Sweep) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "sweep.json").is_file():
        raise ValueError(f"--out {out} holds other files and is not a sweep folder (no sweep.json); "
                         "choose a new folder")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    record = {"base": sweep.base, "grid": sweep.grid, "threads": sweep.threads}
    if sweep.cases:
        record["cases"] = sweep.cases
    _atomic_text(out / "sweep.json", json.dumps(jsonable(record), indent=2))


def run_sweep(sweep: Sweep, out, *, engine: str = "local", workers: int | None = None,
              address: str | None = None, quiet: bool = False) -> SweepResult:
    """Run every grid point not finished in ``out`` and write runs.csv, table.md and figures/.

    On Ctrl-C the runs in flight stop (each keeps its last epoch's checkpoint), runs.csv and
    table.md are written for what finished, and KeyboardInterrupt propagates; calling again resumes.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"--workers must be an integer ≥ 1, got {workers!r}")
    if address and engine != "ray":
        raise ValueError("--address joins a Ray cluster; it needs --engine ray")
    if engine == "ray":
        _import_ray()
    out = Path(out)
    runs = expand(sweep, out)
    _prepare(out, sweep)
    results, extended = {}, 0
    by_key = {run.key: run for run in runs}
    for run in runs:
        r = _done(run)
        if r is not None:
            results[run.key] = {**r, "best": best_of(_history(run))}
    skipped = len(results)
    todo = [r for r in runs if r.key not in results]

    def write():
        write_csv(out / "runs.csv", rows_of(runs, results))
        write_table(out / "table.md", sweep, runs, results)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), initial=skipped, desc="sweep", unit="run", disable=quiet, dynamic_ncols=True)

    def on_result(job, result):
        results[job["key"]] = {**result, "best": best_of(_history(by_key[job["key"]]))}
        write()
        bar.update(1)
        bad = sum(r["status"] != "finished" for r in results.values())
        if bad:
            bar.set_postfix(not_finished=bad)

    write()
    try:
        if todo:
            longer = _shorter_runs(out, todo)
            jobs = [_job(r, sweep.threads, longer.get(r.key)) for r in todo]
            extended = len(longer)
            if engine == "local":
                n = workers or max(1, (os.cpu_count() or 1) // sweep.threads)
                _local(jobs, min(n, len(jobs)), sweep.threads, on_result)
            else:
                _ray(jobs, workers, sweep.threads, on_result, address=address)
    except KeyboardInterrupt:
        raise SweepInterrupted(len(results), len(runs)) from None
    finally:
        bar.close()
    plot_sweep(out / "figures", sweep, runs, results)
    return SweepResult(runs, results, skipped, out, extended)


def main(config, *, engine="local", address=None, workers=None, out=None, quiet=False) -> int:
    """``credit sweep``: exit status 0 when every run finished, 3 when one diverged or failed,
    130 on Ctrl-C (the folder resumes), 2 for a bad sweep file or option."""
    sweep = load_sweep(config)
    out = Path(out or sweep.out or Path("runs") / f"sweep-{Path(config).stem}")
    quiet = quiet or sweep.quiet
    try:
        res = run_sweep(sweep, out, engine=engine, workers=workers, address=address, quiet=quiet)
    except SweepInterrupted as e:
        print(f"credit sweep: interrupted with {e.done} of {e.total} runs done; rerun  credit sweep {config} --out {out}"
              "  to resume (done runs are skipped, interrupted ones continue from their last epoch)", file=sys.stderr)
        return 130
    n = len(res.runs)
    fin, div, fail = res.count("finished"), res.count("diverged"), res.count("failed")
    cont = f", {res.extended} of them continued from a shorter run" if res.extended else ""
    print(f"{n} runs ({res.skipped} done before, {n - res.skipped} now{cont}): {fin} finished, {div} diverged, "
          f"{fail} failed")
    for run in res.runs:
        r = res.results[run.key]
        if r["status"] != "finished":
            print(f"  {run.key}: {r['status']}: {r['error']}", file=sys.stderr)
    print(f"results: {out}/ (runs.csv, table.md, figures/, runs/)")
    return 0 if fin == n else 3


@register_bench("sweep")
def bench_sweep(opts) -> Iterator[dict]:
    """Throughput of the local engine: the same grid of single-threaded runs (digits 64-100-10, FA,
    one run per seed, ~4 s of training each on one core) with 1 and with 2 worker processes,
    alternated; runs per second and the ratio of the medians, with the load average before and after
    (other processes lower the ratio).  Each row's detail gives the busy fraction: the runs' own training
    seconds over workers × wall time (the rest is process start-up, data, checkpoints, figures)."""
    import statistics
    import tempfile
    import time

    runs, epochs = (4, 5) if opts.quick else (8, 100)
    rate = {1: [], 2: []}
    for _ in range(1 if opts.quick else 2):
        for w in (1, 2):
            sweep = parse_sweep({"task": "digits", "sizes": "64-100-10", "epochs": epochs, "n_train": 1024,
                                 "threads": 1, "grid": {"rule": ["fa"], "seed": list(range(runs))}})
            load0 = os.getloadavg()[0]
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = run_sweep(sweep, Path(tmp) / "s", workers=w, quiet=True)
                wall = time.perf_counter() - t0
            if res.count("finished") != runs:
                raise RuntimeError("sweep bench: not every run finished")
            rate[w].append(runs / wall)
            busy = sum(r["seconds"] or 0.0 for r in res.results.values()) / (w * wall)
            yield {"name": f"sweep {runs} runs, {w} worker{'s' if w > 1 else ''} (load {load0:.1f} → "
                           f"{os.getloadavg()[0]:.1f})", "value": runs / wall, "unit": "runs/s", "ratio": None,
                   "detail": f"{epochs} epochs each; busy fraction {busy:.2f} (training seconds / workers × wall)"}
    ratio = statistics.median(rate[2]) / statistics.median(rate[1])
    yield {"name": f"sweep throughput, 2 workers / 1 worker ({os.cpu_count()} cores)", "value": ratio,
           "unit": "×", "ratio": ratio}
