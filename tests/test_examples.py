"""The scripts in examples/ run and say what the README says they show."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_explicit_arrays_example_shows_the_identities():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "explicit_arrays.py")],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    diffs = [float(v) for v in re.findall(r"\| = ([0-9.e+-]+)", out.stdout)]
    assert len(diffs) == 6 and max(diffs) < 1e-12
    assert float(re.search(r"firing rate ([0-9.]+) Hz", out.stdout).group(1)) > 1.0
