import os
from pathlib import Path

import pytest

from hisyngen.extras import missing_openmmlab

os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# The OpenMMLab stack is an extra (`pip install -e '.[test,mmseg-cpu]'`, README); without it the
# modules that train or import MMSegmentation are left out with a reason instead of failing to import.
# The package list lives in hisyngen.extras (one home); single tests elsewhere that need the plugin
# skip through `fixtures.needs_openmmlab`.
MMSEG_MISSING = missing_openmmlab()
# Paths are relative to this folder (pytest's collect_ignore).
MMSEG_TESTS = ["mmseg/test_faults_training.py", "mmseg/test_mmseg_compat.py", "mmseg/test_mmseg_data.py",
               "mmseg/test_mmseg_losses.py", "mmseg/test_mmseg_pseudo_label.py", "e2e/test_mmseg_train.py",
               "test_quality_harness.py"]
collect_ignore = MMSEG_TESTS if MMSEG_MISSING else []


def pytest_report_header(config):
    if MMSEG_MISSING:
        return (f"{', '.join(MMSEG_MISSING)} not installed: skipping {len(MMSEG_TESTS)} MMSegmentation test modules "
                "(pip install -e '.[test,mmseg-cpu]' runs them)")
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real H&E subsets); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Pool packs go to a per-session temporary cache, never the user's ~/.cache."""
    monkeypatch.setenv("HISYNGEN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
