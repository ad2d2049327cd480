"""Shared Brian2 helpers: code-generation target, weight layout, quiet logging.

Code-generation target
----------------------
Every circuit builder takes the same keyword, ``target='numpy'`` or ``'cython'``.  Circuits never
set ``prefs.codegen.target`` at import nor leave it set: each builds and runs inside
:func:`codegen_target`, which sets the preference for the duration of the block (building, one
``Network.run`` call) and restores the previous value afterwards.

* ``'numpy'`` (default): no compiler, generated Python is built at every ``run()`` call
  (tens of milliseconds per code object), fast enough for small circuits and for tests.
* ``'cython'``: compiled loops, worth it for synapse-heavy networks (784-1000-10).  Each code
  object is compiled once and cached on disk in Brian2's default cache directory,
  ``~/.cython/brian_extensions`` (to move it, set Brian2's own preference
  ``prefs.codegen.runtime.cython.cache_dir`` before the first run; nothing here changes it).  The cache
  key is the generated code, so it survives processes: a second session, or a second test, pays
  no compilation as long as the object names, array shapes compiled into code (TimedArray
  capacities) and equations are unchanged — the circuits give every object a fixed name for
  this reason.

Names, time step, namespaces
----------------------------
Every builder takes ``name=``, the prefix of all its Brian2 object names (and of its
``TimedArray``s), so two instances with different names can share one ``Network``; the default
prefix is fixed so that the cython cache keeps hitting.  ``dt`` is a Brian2 time quantity
(``0.1*ms``); a plain number raises ``TypeError`` (:func:`check_dt`).  Constants a circuit's
equations read are also given to its groups as their own ``namespace``, so a shared network
runs without a run namespace.

Weight layout
-------------
A torch-style ``W`` (post, pre) lives in a ``Synapses`` object as one value per synapse.  The
helpers index through ``S.i`` (pre) and ``S.j`` (post), so they do not depend on the order in
which ``connect`` created the synapses (``connect(True)`` happens to be pre-major, i.e.
``S.w[:] == W.T.ravel()``), and they also work for sparse connectivity.
"""

from __future__ import annotations

import contextlib
import logging
import re

import numpy as np

TARGETS = ("numpy", "cython")


def check_target(target: str) -> str:
    """The code-generation target keyword: one of :data:`TARGETS`."""
    if not isinstance(target, str) or target not in TARGETS:
        raise ValueError(f"target: unknown code-generation target {target!r}; valid: {', '.join(TARGETS)}")
    return target


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def check_name(name: str, what: str = "name") -> str:
    """An object-name prefix: a letter, then letters, digits or underscores (Brian2 identifiers)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} must start with a letter and hold only letters, digits and underscores, "
                         f"got {name!r}")
    return name


def check_dt(dt, what: str = "dt"):
    """A positive, finite Brian2 time quantity such as ``0.1*ms`` (a plain number raises ``TypeError``)."""
    from brian2 import Quantity, second
    from brian2.units.fundamentalunits import have_same_dimensions

    if not isinstance(dt, Quantity) or np.ndim(dt) != 0 or not have_same_dimensions(dt, second):
        raise TypeError(f"{what} must be a Brian2 time quantity such as 0.1*ms, got {dt!r} ({type(dt).__name__})")
    if not (np.isfinite(float(dt)) and float(dt) > 0):
        raise ValueError(f"{what} must be a positive, finite time, got {dt!r}")
    return dt


@contextlib.contextmanager
def codegen_target(target: str = "numpy"):
    """Set ``brian2.prefs.codegen.target`` for the duration of the block, then restore it."""
    from brian2 import prefs

    check_target(target)
    old = prefs.codegen.target
    prefs.codegen.target = target
    try:
        yield
    finally:
        prefs.codegen.target = old


def cython_cache_dir() -> str:
    """Where Brian2 keeps compiled cython code objects (its default unless the user set one)."""
    import os

    from brian2 import prefs

    d = prefs.codegen.runtime.cython.cache_dir
    return d if d else os.path.join(os.path.expanduser("~"), ".cython", "brian_extensions")


def quiet_brian(level: int = logging.WARNING) -> None:
    """Lower Brian2's console chatter (its INFO messages about code generation)."""
    from brian2 import BrianLogger

    if level >= logging.ERROR:
        BrianLogger.log_level_error()
    else:
        BrianLogger.log_level_warn()
    # Brian2 emits a DEBUG record per code object; under a capturing handler (pytest) formatting
    # them all costs tens of seconds, so stop them at the logger itself.
    logging.getLogger("brian2").setLevel(max(level, logging.INFO))


def set_matrix(S, var: str, W, *, layout: str = "post_pre") -> None:
    """Write a dense matrix into the synaptic variable ``var``.

    ``layout='post_pre'``: ``W`` has shape (N_post, N_pre) like ``nn.Linear.weight`` (a
    feed-forward W_l); ``'pre_post'``: shape (N_pre, N_post) (a feedback R_l, which carries
    signals from the post- back to the presynaptic group).
    """
    W = np.asarray(W, dtype=np.float64)
    i, j = np.asarray(S.i[:]), np.asarray(S.j[:])
    want = (S.target.N, S.source.N) if layout == "post_pre" else (S.source.N, S.target.N)
    if W.shape != want:
        raise ValueError(f"{var} must have shape {want} ({layout}), got {W.shape}")
    values = W[j, i] if layout == "post_pre" else W[i, j]
    getattr(S, var)[:] = values


def get_matrix(S, var: str, *, layout: str = "post_pre") -> np.ndarray:
    """Read the synaptic variable ``var`` back as a dense float64 matrix (absent synapses = 0)."""
    i, j = np.asarray(S.i[:]), np.asarray(S.j[:])
    values = np.asarray(getattr(S, var)[:], dtype=np.float64)
    if layout == "post_pre":
        out = np.zeros((S.target.N, S.source.N))
        out[j, i] = values
    else:
        out = np.zeros((S.source.N, S.target.N))
        out[i, j] = values
    return out


def set_weights(S, W, var: str = "w") -> None:
    """Torch-layout ``W`` (post, pre) into ``S.<var>``."""
    set_matrix(S, var, W, layout="post_pre")


def get_weights(S, var: str = "w") -> np.ndarray:
    """``S.<var>`` as a torch-layout (post, pre) float64 matrix."""
    return get_matrix(S, var, layout="post_pre")


def set_feedback(S, R, var: str = "r") -> None:
    """Feedback ``R`` (pre, post) — Amit's R_l (d_{l−1}, d_l) — into ``S.<var>``."""
    set_matrix(S, var, R, layout="pre_post")


def get_feedback(S, var: str = "r") -> np.ndarray:
    """``S.<var>`` as a (pre, post) float64 matrix."""
    return get_matrix(S, var, layout="pre_post")


def run_trials(circuit, n_trials, n_phases: int, what: str = "examples"):
    """Advance a trial-scheduled circuit by ``n_trials`` trials of ``n_phases`` steps each.

    ``circuit`` holds ``net``, ``dt``, ``namespace``, ``target``, ``n_trials`` (the trials its
    schedule was built for) and ``trials_done``; ``n_trials=None`` runs all that remain.
    """
    n = circuit.n_trials - circuit.trials_done if n_trials is None else int(n_trials)
    if n < 0 or circuit.trials_done + n > circuit.n_trials:
        raise ValueError(f"only {circuit.n_trials - circuit.trials_done} {what} left, asked for {n}")
    with codegen_target(circuit.target):
        circuit.net.run(n * n_phases * circuit.dt, namespace=circuit.namespace)
    circuit.trials_done += n
    return circuit
