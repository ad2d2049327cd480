"""The ``credit`` application: command line, run folders and checkpoints, tasks, plots, bench, and
the registries of checks, circuit demos and benchmarks.  Built on the torch engine (:mod:`bridge`);
nothing in the engine imports it.

Public surface::

    from bridge.app import TrainConfig, run_experiment, load_run, build_model, run_comparison
"""

from .runs import TrainConfig, build_model, load_run, run_comparison, run_experiment

__all__ = ["TrainConfig", "build_model", "load_run", "run_comparison", "run_experiment"]
