"""What every paper-figure script under ``examples/<Author_Year>/<name>.py`` shares.

A script keeps its science in ``simulate(params) -> results`` and ``plot(results, axes)``, and its
command line in ``main(argv) -> int``; this module gives every ``main`` the same core::

    EX = Example(__file__, seeds="count")           # or "list", or "single"

    def main(argv=None) -> int:
        ap = EX.parser(__doc__)                     # --quick --out --seed/--seeds --data-dir --threads
        ap.add_argument("--epochs", type=int)       # the script's own options
        args = EX.parse(ap, argv)                   # checks the core, sets the threads, files-only figures
        params = {**(QUICK if args.quick else {}), **EX.seed_params(args)}
        results = simulate(params)
        EX.save(args.out, results, plot, ...)       # results.json and the figure
        return 0

    if __name__ == "__main__":
        raise SystemExit(EX.run(main))

* ``--out`` defaults to ``runs/<Author_Year>/<name>``;
* ``--seed S`` (all scripts), and ``--seeds`` as the script counts its seeds: ``count`` (``--seeds N``:
  seeds S, S+1, …, S+N−1), ``list`` (``--seeds S1 S2 …``; ``--seed S`` alone means ``--seeds S``);
* ``--data-dir`` defaults to ``$CREDIT_DATA_DIR``; :meth:`Example.data_dir` is the one place a script
  asks for its data folder, and it stops with a clear error when neither is given — no guessing;
* ``--threads`` (default 1) sets torch's CPU threads.

Scripts are run as files (``python examples/X/fig.py``, ``credit reproduce X/fig``), so they import
this module from the installed package; :func:`load_example` imports one for tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
from pathlib import Path

SEEDS = ("single", "count", "list")
MAX_THREADS = 4096


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts (epochs, images): an integer ≥ 1, else a one-line usage error."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1, got {n}")
    return n


def positive_float(text: str) -> float:
    """argparse ``type=`` for rates: a finite number > 0, else a one-line usage error."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {x}")
    return x


class ExampleError(ValueError):
    """A usage problem of an example script (bad option value, no data folder): one line, exit 2."""


def examples_dir() -> Path:
    """``$CREDIT_EXAMPLES_DIR``, the checkout's examples/ (editable install), or ./examples."""
    env = os.environ.get("CREDIT_EXAMPLES_DIR")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "examples"
    return beside if beside.is_dir() else Path.cwd() / "examples"


def find_examples(folder=None) -> dict[str, Path]:
    """``{"Author_Year/name": path}`` of every example script (files starting with ``_`` are not scripts)."""
    ex = Path(folder) if folder is not None else examples_dir()
    found = {}
    if ex.is_dir():
        for f in sorted(ex.glob("*_*/*.py")):
            if not f.name.startswith("_"):
                found[f"{f.parent.name}/{f.stem}"] = f
    return found


def load_example(name_or_path):
    """Import an example script as a module (``"Lillicrap_2016/fig1"`` or a path), without running its main."""
    path = Path(name_or_path)
    if not path.suffix:
        found = find_examples()
        if str(name_or_path) not in found:
            raise ValueError(f"unknown example {name_or_path!r}; available: {', '.join(found)}")
        path = found[str(name_or_path)]
    modname = f"example_{path.parent.name}_{path.stem}".lower()
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(mod)
    return mod


class Example:
    """The shared command-line core of one example script (``file`` is its ``__file__``)."""

    def __init__(self, file, *, seeds: str = "single", default_seed: int = 0):
        if seeds not in SEEDS:
            raise ValueError(f"seeds must be one of {SEEDS}, got {seeds!r}")
        path = Path(file).resolve()
        self.author, self.name = path.parent.name, path.stem
        self.seeds, self.default_seed = seeds, default_seed
        self.prog = f"{self.author}/{self.name}"

    # ------------------------------------------------------------------------------- options
    def parser(self, doc: str | None = None, **kw) -> argparse.ArgumentParser:
        ap = argparse.ArgumentParser(prog=self.prog, description=(doc or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
        core = ap.add_argument_group("common to every example")
        core.add_argument("--quick", action="store_true", help="a small run (seconds) for smoke tests")
        core.add_argument("--out", default=str(Path("runs") / self.author / self.name),
                          help="results folder (default: %(default)s)")
        core.add_argument("--seed", type=int, default=None,
                          help=f"random seed (default {self.default_seed})" if self.seeds != "count"
                          else f"first seed (default {self.default_seed})")
        if self.seeds == "count":
            core.add_argument("--seeds", type=int, default=None, metavar="N", help="number of seeds, from --seed on")
        elif self.seeds == "list":
            core.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S", help="the seeds to run")
        core.add_argument("--data-dir", default=None,
                          help="folder with the data sets (mnist/, cifar…; default: $CREDIT_DATA_DIR)")
        core.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
        return ap

    def parse(self, ap: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
        """Parse, check the core options, set torch's threads and a files-only matplotlib backend."""
        args = ap.parse_args(argv)
        if not 1 <= args.threads <= MAX_THREADS:
            ap.error(f"--threads must be an integer in [1, {MAX_THREADS}], got {args.threads}")
        if args.seed is not None and args.seed < 0:
            ap.error(f"--seed must be ≥ 0, got {args.seed}")
        seeds = getattr(args, "seeds", None)
        if self.seeds == "count" and seeds is not None and seeds < 1:
            ap.error(f"--seeds must be ≥ 1, got {seeds}")
        if self.seeds == "list" and seeds is not None and min(seeds) < 0:
            ap.error(f"--seeds must be ≥ 0, got {seeds}")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            ap.error(f"--out {out} exists and is not a folder")
        if not os.environ.get("MPLBACKEND"):  # files only, unless the caller chose a backend
            import matplotlib

            matplotlib.use("Agg")
        import torch

        torch.set_num_threads(args.threads)
        args.out = out
        return args

    def seed_params(self, args) -> dict:
        """The seed entries of ``params`` the options ask for (empty: the script's defaults): ``{"seed": S}``
        (single), ``{"seed": S, "seeds": N}`` (count) or ``{"seeds": [S…]}`` (list)."""
        seeds = getattr(args, "seeds", None)
        if self.seeds == "single":
            return {} if args.seed is None else {"seed": args.seed}
        if self.seeds == "count":
            p = {} if args.seed is None else {"seed": args.seed}
            return p if seeds is None else {**p, "seeds": seeds}
        if seeds is not None:
            return {"seeds": list(seeds)}
        return {} if args.seed is None else {"seeds": [args.seed]}

    def data_dir(self, given=None) -> str:
        """``given`` (``--data-dir``), else ``$CREDIT_DATA_DIR``; an :class:`ExampleError` otherwise."""
        d = given or os.environ.get("CREDIT_DATA_DIR", "").strip() or None
        if d is None:
            raise ExampleError("no data folder: pass --data-dir DIR or set $CREDIT_DATA_DIR")
        if not Path(d).is_dir():
            raise ExampleError(f"--data-dir {d}: not a folder")
        return str(d)

    # ------------------------------------------------------------------------------- outputs
    def save(self, out, results: dict, plot_fn=None, *, name: str = "results.json", figure: str | None = None,
             **figure_kw) -> list[Path]:
        """``out/name`` (JSON) and, with ``plot_fn``, ``out/figure`` (default ``<script name>.png``)."""
        from .plots import save_results

        paths = [save_results(out, results, name=name)]
        if plot_fn is not None:
            paths.append(self.figure(Path(out) / (figure or f"{self.name}.png"), plot_fn, results, **figure_kw))
        return paths

    def figure(self, path, plot_fn, results, **figure_kw) -> Path:
        """``plot_fn(results, axes)`` drawn and saved to ``path`` (see :func:`bridge.app.plots.save_figure`)."""
        from .plots import save_figure

        return save_figure(path, plot_fn, results, **figure_kw)

    # ------------------------------------------------------------------------------- running
    def run(self, main, argv=None) -> int:
        """``main(argv)`` as a process exit status: its int, 2 with one line for an :class:`ExampleError`."""
        try:
            rc = main(argv)
        except ExampleError as e:
            print(f"{self.prog}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{self.prog}: interrupted", file=sys.stderr)
            return 130
        return rc if isinstance(rc, int) else 0
