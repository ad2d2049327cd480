"""The ``credit`` command line (also ``python -m bridge``).

Subcommands: ``run`` (the main job on embedded defaults), ``train``, ``sweep``, ``circuit``, ``crossval``,
``reproduce``, ``bench``.  Each has ``--help``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

from plasticity import LOSSES, RULES, TRANSFERS
from plasticity._validate import parse_sizes

from . import registry

RUN_ORDER = ["bp", "fa", "frfb", "dfa", "urfb", "pbp", "ndi", "di", "np", "rf"]
#: the main job's settings that differ from a rule's defaults: DI's fixed point by the chord solver
#: (the same fixed point as the simulated Euler dynamics, ~10× faster; see docs/results.md)
RUN_RULE_PARAMS = {"di": {"method": "steady"}}


def _sizes(text):
    try:
        return parse_sizes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _rule_param(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--rule-param takes KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    for conv in (int, float):
        try:
            return k, conv(v)
        except ValueError:
            pass
    return k, v


def _print_table(rows, columns):
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)))


def _fmt(x, spec=".4g"):
    if x is None:
        return "-"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt(v, ".1f") for v in x) + "]"
    return format(x, spec)


# ----------------------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    """Train every available rule on the embedded digits task and compare them."""
    import torch

    from .plots import plot_history
    from .runs import TrainConfig, run_experiment

    # the embedded networks are small: one thread is as fast, and it does not collapse when another
    # process holds the other cores (thread oversubscription slowed this job 10× in measurements)
    _check_threads(args.threads)
    torch.set_num_threads(args.threads)
    registry.load_rules()
    rules = args.rules or [r for r in RUN_ORDER if r in RULES]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not args.overwrite:
            raise ValueError(f"--out {out} already holds results; choose another --out or pass --overwrite")
        if not (out / "summary.json").is_file():
            raise ValueError(f"--overwrite: {out} is not a credit run folder (no summary.json); not removing it")
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, histories, summaries = [], {}, {}
    _warm_up()  # so that the first rule's seconds do not include torch's one-time start-up
    for name in rules:
        cfg = TrainConfig(task=args.task, rule=name, epochs=args.epochs, seed=args.seed,
                          out=str(out / name), quiet=args.quiet, evals_per_epoch=1,
                          rule_params=dict(RUN_RULE_PARAMS.get(name, {})))
        if not args.quiet:
            print(f"training {name} on {args.task} …", file=sys.stderr)
        s = run_experiment(cfg)
        fin = s["final"]
        histories[name] = s["history"]
        summaries[name] = {k: v for k, v in s.items() if k not in ("history", "model")}
        rows.append({"rule": name, "test_loss": _fmt(fin["test_loss"]),
                     "test_error": _fmt(fin.get("test_error"), ".2%") if "test_error" in fin else _fmt(fin.get("test_nse")),
                     "angle_bp_deg (mean)": _fmt(fin.get("angle_bp_deg_mean")),
                     "seconds": _fmt(fin["seconds"], ".1f")})
    plot_history(histories, out / "figures", title=f"{args.task}: all rules")
    (out / "summary.json").write_text(json.dumps({"task": args.task, "seed": args.seed, "rules": summaries}, indent=2))
    print()
    _print_table(rows, ["rule", "test_loss", "test_error", "angle_bp_deg (mean)", "seconds"])
    one_hidden = len(summaries[rules[0]]["sizes"]) == 3 if rules else False
    if one_hidden and len({"fa", "frfb", "dfa"} & set(rules)) > 1:
        print("\nnote: with one hidden layer fa, frfb and dfa are the same rule (the hidden layer receives R e from "
              "the output error; same seed, same R), so their rows are identical.")
    print(f"\nresults: {out}/ (summary.json, figures/*.png, one folder per rule)")
    return 0


def _warm_up():
    import torch

    from ..losses import TeachingLoss
    from ..network import FeedbackMLP

    m = FeedbackMLP((8, 4, 2), "bp", generator=torch.Generator().manual_seed(0))
    TeachingLoss("ce")(m(torch.zeros(2, 8)), torch.tensor([0, 1])).backward()


# --------------------------------------------------------------------------------------- train
TRAIN_OPTIONS = ("task", "rule", "arch", "untied", "sizes",
                 "activation", "output_activation", "loss", "epochs", "lr", "batch_size",
                 "seed", "data_dir", "n_train", "n_test", "optimizer", "momentum", "weight_decay", "lr_schedule",
                 "lr_min", "lr_step", "lr_gamma", "sparsity", "feedback_sparsity", "epsilon", "alpha", "mu", "dtype",
                 "device", "evals_per_epoch")


MAX_THREADS = 4096


def _check_threads(n):
    if n is not None and not 1 <= n <= MAX_THREADS:
        raise ValueError(f"--threads must be an integer in [1, {MAX_THREADS}], got {n}")


def cmd_train(args) -> int:
    from .runs import TrainConfig, run_experiment

    _check_threads(args.threads)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    registry.load_rules()
    over = {k: getattr(args, k) for k in TRAIN_OPTIONS}
    over["rule_params"] = dict(args.rule_param) if args.rule_param else None
    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k, v in over.items()
                 if v is not None and k not in ("data_dir", "epochs")]
        if given or args.config or args.out:
            drop = ", ".join(given) or "--config/--out"
            raise ValueError(f"--resume continues a run with its saved configuration (--epochs N extends it); "
                             f"drop {drop}")
        folder = Path(args.resume)
        if not (folder / "config.json").is_file():
            raise ValueError(f"--resume {folder}: no config.json there")
        raw = json.loads((folder / "config.json").read_text())
        raw["sizes"] = tuple(raw["sizes"])
        cfg = TrainConfig(**raw)
        cfg.out = str(folder)
        if args.epochs is not None:
            cfg.epochs = args.epochs
            cfg.resolved()  # the one-line check of the value
    elif args.config:
        cfg = TrainConfig.from_toml(args.config, **over, out=args.out, quiet=args.quiet or None)
    else:
        cfg = TrainConfig(**{k: v for k, v in over.items() if v is not None})
    if args.quiet:
        cfg.quiet = True
    if not args.resume and not cfg.out:
        cfg.out = args.out or str(Path("runs") / f"{cfg.task}-{cfg.rule}-seed{cfg.seed}")
    from ..distributed import distributed_from_env

    with distributed_from_env(cfg) as rank:
        s = run_experiment(cfg, resume=bool(args.resume), write=rank == 0)
    if rank != 0:
        return 0 if s["status"] == "finished" else 3
    fin = s["final"]
    print(json.dumps({"rule": s["rule"], "task": s["task"], "seed": s["seed"], "status": s["status"],
                      "final": {k: fin[k] for k in fin}}, indent=2, default=str))
    if s["status"] != "finished":
        print(f"credit train: {s['status']}: {s.get('message', '')}", file=sys.stderr)
        return 3
    print(f"results: {cfg.out}/")
    return 0


# --------------------------------------------------------------------------------------- sweep
def cmd_sweep(args) -> int:
    from .sweep import main as sweep_main

    return sweep_main(args.config, engine=args.engine, address=args.address, workers=args.workers, out=args.out,
                      quiet=args.quiet)


# ------------------------------------------------------------------------------------- circuit
def cmd_circuit(args) -> int:
    registry.load(registry.DEMO_MODULES)
    if args.name not in registry.DEMOS:
        print(f"unknown circuit {args.name!r}; valid: {', '.join(sorted(registry.DEMOS))}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs") / f"circuit-{args.name}")
    out.mkdir(parents=True, exist_ok=True)
    doc = (registry.DEMOS[args.name].__doc__ or "").strip().split("\n")[0]
    print(f"simulating {args.name}: {doc} (Brian2 compiles new code on first use; later runs reuse it) …",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    demo = registry.DEMOS[args.name]

    def log(line):
        print(f"  [{time.perf_counter() - t0:5.0f} s] {line}", file=sys.stderr, flush=True)

    paths = demo(out, args.seed, **({"log": log} if "log" in inspect.signature(demo).parameters else {}))
    for p in paths:
        print(p)
    print(f"{args.name}: {len(paths)} file(s) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------ crossval
def cmd_crossval(args) -> int:
    registry.load(registry.CHECK_MODULES)
    names = sorted(registry.CHECKS)
    if args.only:
        unknown = [n for n in args.only if n not in registry.CHECKS]
        if unknown:
            return _usage_error("crossval", f"--only: unknown check(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        names = args.only
    if args.examples is not None and args.examples < 1:
        return _usage_error("crossval", f"--examples must be an integer ≥ 1, got {args.examples}")
    if args.json and Path(args.json).is_dir():
        return _usage_error("crossval", f"--json {args.json} is a directory; give a file path such as "
                                        f"{Path(args.json) / 'crossval.json'}")
    opts = registry.CheckOptions(seed=args.seed, sizes=args.sizes, examples=args.examples,
                                 data_dir=args.data_dir, quiet=args.quiet,
                                 allow_substitute_data=args.allow_substitute_data)
    for n in names:  # inputs a check cannot use (missing data, bad sizes) stop the run before it starts
        if n in registry.PREFLIGHTS:
            registry.PREFLIGHTS[n](opts)
    results = []
    for i, n in enumerate(names, 1):
        t0 = time.perf_counter()
        if not args.quiet:
            print(f"[{i}/{len(names)}] running {n} …", file=sys.stderr)
        rows = registry.CHECKS[n](opts)
        for r in rows:
            r.detail = (r.detail + f" ({time.perf_counter() - t0:.1f} s)").strip()
            results.append(r)
        if not args.quiet:
            bad = sum(not r.passed for r in rows)
            print(f"[{i}/{len(names)}] {n}: {len(rows)} row(s), " + (f"{bad} FAILED" if bad else "all passed")
                  + f" ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    rows = [{"check": r.name, "max_rel_diff": f"{r.max_rel_diff:.2e}", "tolerance": f"{r.tolerance:.0e}",
             "passed": "yes" if r.passed else "NO", "detail": r.detail} for r in results]
    _print_table(rows, ["check", "max_rel_diff", "tolerance", "passed", "detail"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"checks": [r.as_dict() for r in results]}, indent=2))
    failed = [r.name for r in results if not r.passed]
    if failed:
        print(f"\n{len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    substituted = sum("SUBSTITUTE DATA" in r.detail for r in results)
    note = f" ({substituted} on substitute data, --allow-substitute-data)" if substituted else ""
    print(f"\nall {len(results)} checks passed{note}")
    return 0


# ----------------------------------------------------------------------------------- reproduce
def _examples_dir() -> Path:
    from .examples import examples_dir

    return examples_dir()


def _reproductions() -> dict:
    from .examples import find_examples

    return find_examples()


def cmd_reproduce(args) -> int:
    import runpy

    found = _reproductions()
    if args.name is None or args.name not in found:
        if args.name is not None:
            print(f"unknown reproduction {args.name!r}", file=sys.stderr)
        print("available: " + (", ".join(found) or f"none (no examples/ folder at {_examples_dir()}; run from the "
                                                     "checkout or set $CREDIT_EXAMPLES_DIR)"))
        return 0 if args.name is None else 2
    mod = runpy.run_path(str(found[args.name]), run_name="credit_reproduce")
    rc = mod["main"](args.rest)
    return rc if isinstance(rc, int) else 0


# --------------------------------------------------------------------------------------- bench
def _usage_error(command: str, message: str) -> int:
    print(f"credit {command}: error: {message}", file=sys.stderr)
    return 2


def cmd_bench(args) -> int:
    registry.load(registry.BENCH_MODULES)
    valid = ", ".join(registry.BENCHES)
    if args.only:
        unknown = [n for n in args.only if n not in registry.BENCHES]
        if unknown:
            return _usage_error("bench", f"--only: unknown group(s) {', '.join(unknown)}; valid: {valid}")
    if args.repeats < 1:
        return _usage_error("bench", f"--repeats must be an integer ≥ 1, got {args.repeats}")
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        return _usage_error("bench", f"--threads must be an integer in [1, {MAX_THREADS}], got {args.threads}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        return _usage_error("bench", f"--device cuda: CUDA is not available to this torch ({torch.__version__}); "
                                     "use --device cpu")
    opts = registry.BenchOptions(repeats=args.repeats, quick=args.quick, seed=args.seed, only=args.only or [],
                                 device=args.device, progress=not args.quiet)
    names = [n for n in registry.BENCHES if not opts.only or n in opts.only]
    results = []
    for k, n in enumerate(names, 1):
        if not args.quiet:
            print(f"bench {n} ({k}/{len(names)}) …", file=sys.stderr, flush=True)
        t0 = t_row = time.perf_counter()
        for r in registry.BENCHES[n](opts):  # each row as soon as it is measured
            if not args.quiet:
                took = time.perf_counter() - t_row  # rows measured together come out together
                print(f"  {r['name']}: {_fmt(r.get('value'))} {r.get('unit', '')} (ratio {_fmt(r.get('ratio'))})"
                      + (f"  [{took:.1f} s]" if took >= 0.1 else ""), file=sys.stderr, flush=True)
            t_row = time.perf_counter()
            results.append(r)
        if not args.quiet:
            print(f"  ({n}: {time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    _print_table([{k: (_fmt(v) if isinstance(v, float) or v is None else v) for k, v in r.items()} for r in results],
                 ["name", "value", "unit", "ratio"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"results": results}, indent=2))
    return 0


# ---------------------------------------------------------------------------------------- main
class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, ``credit CMD: error: …`` (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="credit", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="train every rule on the embedded digits task (no files, no network)")
    r.add_argument("--out", default="runs/credit-run", help="results folder (default: %(default)s)")
    r.add_argument("--task", default="digits", help="an embedded task (default: %(default)s)")
    r.add_argument("--rules", nargs="+", help="rules to compare (default: all available)")
    r.add_argument("--epochs", type=int, default=None, help="epochs per rule (default: the task's)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--overwrite", action="store_true", help="replace an earlier credit run in --out")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("train", help="train one network with one rule")
    t.add_argument("--task", help="lillicrap-linear lillicrap-nonlinear digits mnist fashion-mnist cifar10 cifar100 "
                   "cifar10-lossy (the lossy JPEG stand-in, not CIFAR-10)")
    t.add_argument("--rule", help="bp fa frfb dfa urfb pbp ndi (and di np rf)")
    t.add_argument("--sizes", type=_sizes, help="layer sizes of --arch mlp, e.g. 30-20-10")
    t.add_argument("--arch", help="mlp (default; --sizes), amit-simpnet, amit-deepnet, amit-deepernet, amit-deepnet-s, "
                                  "lansdell-cnn (built as the papers define them)")
    t.add_argument("--untied", action="store_true", default=None,
                   help="locally connected (untied) layers instead of convolutions (Amit §4.1)")
    t.add_argument("--activation", help=" ".join(TRANSFERS))
    t.add_argument("--output-activation", help="transfer of the output layer (default: the task's)")
    t.add_argument("--loss", help=" ".join(LOSSES))
    t.add_argument("--epochs", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", type=int, help="1 = online learning")
    t.add_argument("--seed", type=int)
    t.add_argument("--optimizer", help="sgd (default) or adam")
    t.add_argument("--momentum", type=float, help="SGD momentum in [0, 1)")
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--lr-schedule", help="constant (default), cosine (to --lr-min over the run) or step "
                                         "(×--lr-gamma every --lr-step epochs)")
    t.add_argument("--lr-min", type=float)
    t.add_argument("--lr-step", type=int)
    t.add_argument("--lr-gamma", type=float)
    t.add_argument("--evals-per-epoch", type=int)
    t.add_argument("--sparsity", type=float, help="fraction of W fixed at zero (e.g. 0.5)")
    t.add_argument("--feedback-sparsity", type=float, help="fraction of R fixed at zero")
    t.add_argument("--epsilon", type=float, help="URFB feedback learning ratio ε ∈ [0, 1]")
    t.add_argument("--alpha", type=float, help="NDI/DI leak α ≥ 0")
    t.add_argument("--mu", type=float, help="hinge weight of wrong classes, 0 < μ ≤ 1")
    t.add_argument("--rule-param", action="append", type=_rule_param, metavar="KEY=VALUE",
                   help="any other rule parameter (repeatable)")
    t.add_argument("--n-train", type=int, help="use only the first N training examples")
    t.add_argument("--n-test", type=int, help="use only the first N test examples")
    t.add_argument("--dtype", choices=["float32", "float64"])
    t.add_argument("--device", help="torch device, e.g. cpu or cuda")
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--data-dir", default=os.environ.get("CREDIT_DATA_DIR"),
                   help="folder with MNIST/Fashion-MNIST IDX files (or env CREDIT_DATA_DIR)")
    t.add_argument("--config", help="TOML file with any of these options (flags override it)")
    t.add_argument("--out", help="results folder, new or empty (default: runs/TASK-RULE-seedN)")
    t.add_argument("--resume", metavar="DIR",
                   help="continue the interrupted run in DIR from its last checkpoint; with --epochs N, extend a run "
                        "(finished or not) to N epochs")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    w = sub.add_parser("sweep", help="credit train over a grid of options (TOML), in parallel, resumable")
    w.add_argument("config", help="TOML: fixed credit train options at the top level, [grid] OPTION = [values], "
                                  "[[case]] tables of options that change together (each case × the grid); "
                                  "optional threads = N (torch threads per run, default 1)")
    w.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local: worker processes on this machine (default); ray: a Ray cluster "
                        '(pip install "credit-circuits[sweep]")')
    w.add_argument("--address", help="with --engine ray: join this running Ray cluster (default: start one "
                                     "here); --out must then be on a file system the cluster shares")
    w.add_argument("--workers", type=int, help="runs at once (default: local: CPU cores / threads; ray: "
                                               "as the cluster's CPUs allow)")
    w.add_argument("--out", help="sweep folder (default: the file's out, else runs/sweep-NAME); rerunning "
                                 "into it skips finished runs")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=cmd_sweep)

    c = sub.add_parser("circuit", help="simulate one Brian2 circuit and save trace plots")
    c.add_argument("name", help="output-error, feedback-gate, layered, controller, recirculation, node-perturbation")
    c.add_argument("--out", help="folder for the plots (default: runs/circuit-NAME)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_circuit)

    x = sub.add_parser("crossval", help="run each circuit against its matrix twin; non-zero exit on failure")
    x.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--sizes", type=_sizes, help="layer sizes for the layered checks, e.g. 784-100-10")
    x.add_argument("--examples", type=int, help="number of training examples for the learning checks (≥ 1)")
    x.add_argument("--data-dir", default=os.environ.get("CREDIT_DATA_DIR"),
                   help="folder with mnist/ or the MNIST IDX files (default: $CREDIT_DATA_DIR)")
    x.add_argument("--allow-substitute-data", action="store_true",
                   help="when MNIST is missing, run the MNIST checks on digits upsampled to 28×28 "
                        "(every such row says so) instead of stopping with an error")
    x.add_argument("--json", help="write {\"checks\": [...]} here")
    x.add_argument("--quiet", action="store_true")
    x.set_defaults(func=cmd_crossval)

    e = sub.add_parser("reproduce", help="run a paper-figure script from examples/ (no NAME: list them)")
    e.add_argument("name", nargs="?", help="e.g. Lillicrap_2016/fig1")
    e.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the script, e.g. --quick")
    e.set_defaults(func=cmd_reproduce)

    b = sub.add_parser("bench", help="step times of each rule against plain torch backprop (one process)")
    b.add_argument("--json", help="write {\"results\": [...]} here")
    b.add_argument("--repeats", type=int, default=30, help="timed steps per implementation (≥ 1)")
    b.add_argument("--quick", action="store_true", help="fewer repeats and smaller circuit sizes")
    b.add_argument("--only", nargs="+", metavar="NAME", help="benchmark groups to run: rules, di, circuit")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--quiet", action="store_true")
    b.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where batched torch runs (rules and di groups; default: %(default)s)")
    b.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; the numba "
                                                 "per-example baseline of the di group is single-threaded)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    if not os.environ.get("MPLBACKEND"):  # the commands write figure files; never open a window
        import matplotlib

        matplotlib.use("Agg")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the subcommand, whose options the user is writing
        sub = parser._subparsers._group_actions[0].choices[args.command]
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"credit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"credit {args.command}: {e or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
