"""docs/method.md states every default with its source; this keeps those statements true."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mmengine", reason="the doc's training table is checked against the mmseg configs")
TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_method_doc.py"


def test_every_default_stated_in_method_doc_matches_the_code():
    proc = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " 0 mismatches" in proc.stdout
