"""Bad inputs and silent side effects: each must give a clear error, or leave global state alone."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=300)


# ------------------------------------------------------------------------------- matplotlib
def test_library_and_example_imports_leave_the_matplotlib_backend_alone():
    """A notebook's backend survives importing bridge.plots, every example, and the demo plot helpers."""
    r = _python("""
        import importlib.util, pathlib
        import matplotlib
        matplotlib.use("svg")
        import bridge.plots
        import bridge.checks.amit, bridge.checks.learned
        bridge.checks.amit._plt(); bridge.checks.learned._plt()
        for i, f in enumerate(sorted(pathlib.Path("examples").glob("*_*/*.py"))):
            spec = importlib.util.spec_from_file_location(f"example_{i}", f)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        print("backend", matplotlib.get_backend())
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1].lower() == "svg", r.stdout
