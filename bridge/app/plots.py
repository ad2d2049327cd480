"""Figures for training runs: loss/error curves and update angles, one line per rule."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt


def plot_history(histories: dict, folder, title: str = "") -> list[Path]:
    """Write ``loss.png`` (and ``angles.png`` when there are hidden layers) to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for rule, hist in histories.items():
        ep = [r["epoch"] for r in hist]
        axes[0].plot(ep, [r["test_loss"] for r in hist], label=rule)
        key = "test_error" if "test_error" in hist[0] else "test_nse"
        axes[1].plot(ep, [r[key] for r in hist], label=rule)
    axes[0].set(xlabel="epoch", ylabel="test loss", yscale="log", title=title)
    axes[1].set(xlabel="epoch", ylabel=key.replace("_", " "), yscale="log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    paths.append(folder / "loss.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    if any(r.get("angle_bp_deg") for h in histories.values() for r in h):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for rule, hist in histories.items():
            rows = [r for r in hist if r.get("angle_bp_deg")]
            for l in range(len(rows[0]["angle_bp_deg"]) if rows else 0):
                ax.plot([r["epoch"] for r in rows], [r["angle_bp_deg"][l] for r in rows],
                        label=f"{rule} h{l + 1}")
        ax.axhline(90, color="0.6", lw=0.8, ls="--")
        ax.set(xlabel="epoch", ylabel="∠(δ_rule, δ_BP) [deg]", ylim=(0, 100), title="update angle to backprop")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        paths.append(folder / "angles.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def save_results(out, results: dict, *, name: str = "results.json") -> Path:
    """Write ``results`` as JSON into the folder ``out`` (created), numpy values made plain."""
    import json

    from .runs import jsonable

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(jsonable(results), indent=1))
    return path


def save_figure(path, plot_fn, results, *, nrows: int = 1, ncols: int = 1, figsize=(6, 4), dpi: int = 120,
                **subplots_kw) -> Path:
    """Draw ``plot_fn(results, axes)`` on a fresh figure, save it to ``path`` and close it.

    The examples' ``plot(results, axes)`` functions take the axes they draw on; this is the one
    place that makes the figure around them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, **subplots_kw)
    plot_fn(results, axes)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def mean_sd(values) -> dict:
    """``{"mean", "sd", "n"}`` of finite values; sd with ddof 1 (the sample sd), 0 for n = 1, NaN for
    n = 0.  The one mean ± sd of the package's tables and plots."""
    import math

    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "sd": math.nan, "n": 0}
    m = sum(v) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
    return {"mean": m, "sd": sd, "n": n}


def mean_sd_curves(rows, axis: int = 0):
    """Pointwise mean and sd (ddof 1, 0 for a single row; NaNs ignored) of curves stacked along
    ``axis`` — the bands of the package's figures, on the same convention as :func:`mean_sd`."""
    import warnings

    import numpy as np

    a = np.asarray(rows, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        m = np.nanmean(a, axis=axis)
        n = np.sum(np.isfinite(a), axis=axis)
        sd = np.where(n > 1, np.nanstd(a, axis=axis, ddof=1) if a.shape[axis] > 1 else 0.0, 0.0)
    return m, sd
