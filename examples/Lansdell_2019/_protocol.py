"""The tuning and seeding protocol of the Lansdell et al. (2019) scripts (not a script itself).

Lansdell, Prakash & Kording (2019) state only "Hyperparameters found through random search"
(captions of Figs. 1–2) and show mean ± standard error over 5 (Fig. 1) or 10 (Fig. 2) runs.  Here:

* :func:`validation_split` holds ``n_val`` examples of the TRAINING set out (a seeded permutation);
  the search trains on (a part of) the rest and scores on them.  The test set is never looked at.
* :func:`random_search` draws ``n_points`` settings, each parameter log-uniform in its range, scores
  each (lower is better; a diverged run scores +inf) and picks the lowest score — the first on ties.
* :func:`summarise` is mean ± sd over seeds (:func:`bridge.app.plots.mean_sd`, ddof 1) of a final value,
  per layer where the value is a list.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np


def check_space(space: dict) -> dict:
    """``{name: (lo, hi)}`` with 0 < lo ≤ hi (log-uniform ranges); a ValueError otherwise."""
    for name, rng in space.items():
        if len(rng) != 2 or not 0 < rng[0] <= rng[1] or not math.isfinite(rng[1]):
            raise ValueError(f"search range of {name} must be (lo, hi) with 0 < lo ≤ hi < inf, got {rng!r}")
    return space


def draw(space: dict, n_points: int, seed: int) -> list[dict]:
    """``n_points`` settings, each parameter log-uniform on its range (one generator per ``seed``)."""
    if not isinstance(n_points, int) or n_points < 1:
        raise ValueError(f"n_points must be an integer ≥ 1, got {n_points!r}")
    check_space(space)
    rng = np.random.default_rng(seed)
    return [{k: float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) for k, (lo, hi) in space.items()}
            for _ in range(n_points)]


def validation_split(data, n_val: int, n_fit: int | None = None, seed: int = 0):
    """``(fit, val)``: ``n_val`` training examples held out (seeded permutation) and up to ``n_fit`` of
    the others to train on; both are objects with ``x_train, y_train, x_test, y_test`` where the "test"
    arrays are the validation examples, so the shared training loop evaluates on them."""
    n = len(data.x_train)
    if not isinstance(n_val, int) or not 1 <= n_val < n:
        raise ValueError(f"n_val must be an integer in [1, {n - 1}] (the training set has {n}), got {n_val!r}")
    if n_fit is not None and (not isinstance(n_fit, int) or n_fit < 1):
        raise ValueError(f"n_fit must be an integer ≥ 1 or None, got {n_fit!r}")
    perm = np.random.default_rng(seed).permutation(n)
    val, rest = perm[:n_val], perm[n_val:]
    fit = rest if n_fit is None else rest[:n_fit]
    split = SimpleNamespace(x_train=data.x_train[fit], y_train=data.y_train[fit],
                            x_test=data.x_train[val], y_test=data.y_train[val])
    return split, {"val_index": val, "fit_index": fit}


def search_seed(base: int, rule: str, rules: tuple) -> int:
    """The seed of ``rule``'s random search: fixed by the rule's place in the script's own ``rules``
    (not in the list a user asks for), so a rule draws the same points whichever others run with it."""
    return base + 1000 * rules.index(rule)


def random_search(space: dict, n_points: int, score, seed: int = 0) -> dict:
    """Score ``n_points`` log-uniform draws from ``space`` with ``score(point) -> float`` (lower is
    better); a point whose training diverged (:class:`bridge.train.Diverged`) or scored NaN gets +inf.
    Returns ``{"points": [{"params", "score", "diverged"}…], "best": index, "best_params": {...}}``."""
    from bridge.train import Diverged

    points = []
    for pt in draw(space, n_points, seed):
        try:
            s, why = float(score(pt)), None
        except Diverged as e:
            s, why = math.inf, str(e).splitlines()[0]
        if not math.isfinite(s):
            s, why = math.inf, why or "non-finite score"
        points.append({"params": pt, "score": s, "diverged": why})
    scores = [p["score"] for p in points]
    best = int(np.argmin(scores))
    if not math.isfinite(scores[best]):
        raise ValueError(f"every one of the {n_points} search points diverged; narrow the ranges {space}")
    return {"points": points, "best": best, "best_params": dict(points[best]["params"])}


def summarise(values: list) -> dict | list:
    """mean ± sd over seeds of one final value per seed (a number, or a per-layer list of numbers;
    ``None`` where the rule has no such value, e.g. BP's feedback distance)."""
    from bridge.app.plots import mean_sd

    present = [v for v in values if v is not None]
    if not present:
        return None
    if isinstance(present[0], list):
        return [{**mean_sd([v[i] for v in present]), "per_seed": [v[i] for v in present]}
                for i in range(len(present[0]))]
    return {**mean_sd(present), "per_seed": present}


def print_search(search: dict | None, what: str, digits: int = 4) -> None:
    """One line per rule: the best point of its search, its validation ``what`` and its parameters."""
    for rule, s in (search or {}).items():
        best = s["points"][s["best"]]
        print(f"search {rule}: best of {len(s['points'])} validation {what} {best['score']:.{digits}f} at "
              + ", ".join(f"{k}={v:.3g}" for k, v in best["params"].items()))
