"""Registries that the command line reads: cross-checks, circuit demos and benchmarks.

Each feature module registers its entries with a decorator; the CLI imports the modules listed
in ``*_MODULES`` lazily so that ``credit --help`` stays fast and Brian2 loads only when needed.

* A **check** is ``fn(opts: CheckOptions) -> list[CheckResult]``: a circuit (or an
  implementation) run against its matrix twin on the same weights, inputs and seed.
* A **demo** is ``fn(out: Path, seed: int) -> list[Path]``: simulates one circuit and saves plots.
* A **bench** is ``fn(opts: BenchOptions) -> list[dict]`` with rows
  ``{"name", "value", "unit", "ratio"}`` measured side by side in one process.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

CHECK_MODULES = ["bridge.checks.core", "bridge.checks.conv", "bridge.checks.amit", "bridge.checks.inversion",
                 "bridge.checks.learned", "bridge.checks.spiking"]
DEMO_MODULES = ["bridge.checks.amit", "bridge.checks.inversion", "bridge.checks.learned", "bridge.checks.spiking"]
BENCH_MODULES = ["bridge.app.bench", "bridge.checks.amit", "bridge.checks.inversion", "bridge.checks.learned",
                 "bridge.checks.spiking_bench", "bridge.app.sweep"]

CHECKS: dict[str, Callable] = {}
DEMOS: dict[str, Callable] = {}
#: check name → fn(opts) that raises ValueError for inputs the check cannot use (missing data, bad
#: sizes), called for every selected check before any of them runs
PREFLIGHTS: dict[str, Callable] = {}
BENCHES: dict[str, Callable] = {}


@dataclass
class CheckOptions:
    seed: int = 0
    sizes: tuple | None = None
    examples: int | None = None
    data_dir: str | None = None
    quiet: bool = False
    allow_substitute_data: bool = False  # MNIST missing: run on upsampled digits, saying so in every row


@dataclass
class CheckResult:
    name: str
    max_rel_diff: float
    tolerance: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.max_rel_diff <= self.tolerance)

    def as_dict(self) -> dict:
        return {"name": self.name, "max_rel_diff": float(self.max_rel_diff), "tolerance": self.tolerance,
                "passed": self.passed, "detail": self.detail}


@dataclass
class BenchOptions:
    repeats: int = 20
    quick: bool = False
    seed: int = 0
    only: list = field(default_factory=list)
    device: str = "cpu"
    progress: bool = False  # bars on stderr during long timings (the CLI sets it unless --quiet)


def _registrar(table):
    def register(name: str):
        def deco(fn):
            if name in table:
                raise ValueError(f"{name!r} registered twice")
            table[name] = fn
            return fn

        return deco

    return register


register_check = _registrar(CHECKS)
register_demo = _registrar(DEMOS)
register_bench = _registrar(BENCHES)
register_preflight = _registrar(PREFLIGHTS)


def load(modules) -> None:
    """Import the feature modules; a missing one is an error (the lists name only modules that exist)."""
    for m in modules:
        try:
            importlib.import_module(m)
        except ModuleNotFoundError as e:
            if e.name == m:
                raise ModuleNotFoundError(f"registry: feature module {m!r} is listed but does not exist") from e
            raise


def max_rel_diff(a, b) -> float:
    """``max|a − b| / max(max|b|, tiny)`` over arrays (numpy or torch), in float64."""
    import numpy as np

    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if hasattr(b, "detach") else b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-300)
    return float(np.abs(a - b).max() / scale) if a.size else 0.0


#: modules that register extra rules (plasticity specs and their torch hooks)
RULE_MODULES = ["plasticity.inversion", "plasticity.learned_feedback", "bridge.inversion", "bridge.learned_feedback"]


def load_rules() -> None:
    load(RULE_MODULES)
