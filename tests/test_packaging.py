"""`organism:NAME` must work from a non-editable install: the wheel carries data/ as faithcheck/_data."""

import subprocess
import sys
from pathlib import Path

import pytest

from faithcheck.paths import REPO_ROOT


def test_wheel_ships_the_organisms_and_the_heldout_set(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(wheels), str(REPO_ROOT)], capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here: {build.stderr[-200:]}")
    assert build.returncode == 0, build.stderr
    # the project's own packaging warns about nothing (a license table, an unlisted data folder)
    assert "Warning" not in build.stderr, build.stderr
    wheel = next(Path(wheels).glob("faithcheck-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = ("from faithcheck.backends.organism import available_organisms; from faithcheck.paths import data_dir; "
            "from faithcheck.tasks import get_task; print(data_dir()); print(','.join(available_organisms())); "
            "print(len(get_task('modular').load(None, 0).items))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    where, organisms, n_items = out.stdout.split()
    assert where.startswith(str(target))
    assert set(organisms.split(",")) >= {"faithful", "post_hoc", "encoded", "no_cot_control"}
    assert int(n_items) == 500
