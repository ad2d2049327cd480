"""Validation helpers: every out-of-range parameter raises a ``ValueError`` that names the
parameter, the value received and the allowed range."""

from __future__ import annotations

import math


def check_range(name: str, value, lo=None, hi=None, *, lo_open=False, hi_open=False) -> float:
    """Return ``float(value)`` if it lies in the interval, else raise ``ValueError``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(v):
        raise ValueError(f"{name} must be a number, got NaN")
    bad = (lo is not None and (v <= lo if lo_open else v < lo)) or (
        hi is not None and (v >= hi if hi_open else v > hi)
    )
    if bad:
        left = "-inf" if lo is None else f"{lo:g}"
        right = "inf" if hi is None else f"{hi:g}"
        interval = ("(" if lo_open or lo is None else "[") + f"{left}, {right}" + (
            ")" if hi_open or hi is None else "]"
        )
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return v


def check_choice(name: str, value: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(sorted(choices))}")
    return value


def check_sizes(sizes) -> tuple[int, ...]:
    """Layer sizes ``(d_0, d_1, …, d_L)``: at least two positive integers."""
    try:
        raw = tuple(sizes)
        ints = tuple(int(s) for s in raw)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"sizes must be integers like 30-20-10, got {sizes!r}") from None
    if any(isinstance(s, bool) or float(s) != i for s, i in zip(raw, ints)):
        raise ValueError(f"sizes must be integers like 30-20-10, got {sizes!r}")
    sizes = ints
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"sizes must be ≥ 2 positive integers (d_0-…-d_L), got {sizes!r}")
    return sizes


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"30-20-10"`` → ``(30, 20, 10)`` with a clear error for anything else."""
    parts = str(text).replace(",", "-").split("-")
    try:
        return check_sizes(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"sizes must look like 30-20-10 (positive integers), got {text!r}") from None


def check_chain(Ws, Rs=None, *, direct=False) -> None:
    """Shapes must chain: ``W_l`` (d_l, d_{l-1}); ``R_l`` (d_{l-1}, d_l), or (d_{l-1}, d_L) when direct."""
    for l in range(1, len(Ws)):
        if Ws[l].shape[1] != Ws[l - 1].shape[0]:
            raise ValueError(
                f"weight shapes do not chain: W_{l + 1} has {Ws[l].shape[1]} inputs but W_{l} has "
                f"{Ws[l - 1].shape[0]} outputs"
            )
    if Rs is None:
        return
    if len(Rs) != len(Ws):
        raise ValueError(f"need one feedback matrix per layer: got {len(Rs)} for {len(Ws)} layers")
    d_out = Ws[-1].shape[0]
    for l, (W, R) in enumerate(zip(Ws, Rs), start=1):
        if R is None:
            continue
        want = (W.shape[1], d_out if direct else W.shape[0])
        if tuple(R.shape) != want:
            raise ValueError(f"R_{l} must have shape {want} (d_{l - 1}, {'d_L' if direct else f'd_{l}'}), got {tuple(R.shape)}")
