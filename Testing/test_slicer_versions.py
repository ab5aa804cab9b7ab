"""The Slicer versions WeakNet states it supports, tested: library and bridge tests run in a subprocess with the
numpy and scipy that the minimum Slicer bundles (a ``pip install --target`` overlay first on PYTHONPATH), and
the minimum is the same in the CMake metadata, the module and docs/slicer.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MINIMUM_SLICER = "5.10"
BUNDLED = {"python": "3.12", "numpy": "2.0.2", "scipy": "1.13.1"}
"""What Slicer 5.10.0 bundles (SuperBuild/External_python*.cmake at tag v5.10.0)."""
UNDER_SLICERS_NUMPY = ["test_asm_template.py", "test_asm_rasterize.py", "test_io_volume.py", "test_io_points.py",
                       "test_train_loss.py",
                       "test_slicer_session.py::test_oblique_template_matches_library_fit_voxel_exactly"]
"""Fast tests of the library (templates, files, loss) and one of the bridge as it runs in Slicer."""


@pytest.fixture(scope="module")
def overlay() -> Path:
    """Slicer's numpy and scipy installed into build/slicer-<version>-python (once; pip from PyPI)."""
    target = ROOT / "build" / f"slicer-{MINIMUM_SLICER}-python"
    pins = [f"numpy=={BUNDLED['numpy']}", f"scipy=={BUNDLED['scipy']}"]
    stamp = target / ".pins"
    if not stamp.is_file() or stamp.read_text(encoding="utf-8") != " ".join(pins):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                        "--upgrade", "--target", str(target), *pins], check=True)
        stamp.write_text(" ".join(pins), encoding="utf-8")
    return target


def test_library_and_bridge_tests_pass_with_the_minimum_slicers_numpy_and_scipy(overlay):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(overlay), os.environ.get("PYTHONPATH", "")])}
    probe = subprocess.run([sys.executable, "-c", "import numpy, scipy; print(numpy.__version__, scipy.__version__)"],
                           env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.split() == [BUNDLED["numpy"], BUNDLED["scipy"]]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *[str(ROOT / "Testing" / t) for t in UNDER_SLICERS_NUMPY]],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:]
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary and "failed" not in summary, summary


def test_the_minimum_slicer_is_stated_the_same_everywhere():
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert f'set(WEAKNET_MINIMUM_SLICER_VERSION "{MINIMUM_SLICER}")' in cmake
    assert "if(Slicer_VERSION VERSION_LESS WEAKNET_MINIMUM_SLICER_VERSION)" in cmake
    docs = (ROOT / "docs" / "slicer.md").read_text(encoding="utf-8")
    assert f"Slicer {MINIMUM_SLICER} or later" in docs
    assert all(v in docs for v in BUNDLED.values()) and "test_slicer_versions.py" in docs
    assert f"Slicer {MINIMUM_SLICER} or later" in (ROOT / "WeakNetSlicer" / "WeakNetSlicer.py").read_text(
        encoding="utf-8")
    requires = re.search(r'requires-python = ">=(\d+)\.(\d+)"',
                         (ROOT / "WeakNetLib" / "pyproject.toml").read_text(encoding="utf-8"))
    assert tuple(map(int, requires.groups())) <= tuple(map(int, BUNDLED["python"].split(".")))
